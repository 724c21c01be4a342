package remote

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// blobServer serves one blob the way distribution does (ranges included
// unless noRanges) and records the Range headers it was asked for.
type blobServer struct {
	data     []byte
	noRanges bool
	mu       sync.Mutex
	ranges   []string
}

func (b *blobServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	b.mu.Lock()
	b.ranges = append(b.ranges, r.Header.Get("Range"))
	b.mu.Unlock()
	if b.noRanges {
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b.data))
}

func TestPushResumable(t *testing.T) {
	data := make([]byte, 3*resumeMinSize+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: int64(len(data))}
	half := len(data) / 2
	corrupt := append([]byte(nil), data[:half]...)
	corrupt[10] ^= 0xff

	tests := []struct {
		name      string
		partial   []byte // what an earlier pull left
		noRanges  bool
		wantRange string // the first Range header the server sees
	}{
		{name: "fresh", wantRange: ""},
		{name: "resume", partial: data[:half], wantRange: "bytes=" + itoa(half) + "-" + itoa(len(data)-1)},
		{name: "corrupt part", partial: corrupt, wantRange: "bytes=" + itoa(half) + "-" + itoa(len(data)-1)},
		{name: "no range support", partial: data[:half], noRanges: true, wantRange: "bytes=" + itoa(half) + "-" + itoa(len(data)-1)},
		{name: "complete part", partial: data, wantRange: "none"},
		{name: "oversized part", partial: append(append([]byte(nil), data...), 1, 2, 3), wantRange: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs := &blobServer{data: data, noRanges: tt.noRanges}
			srv := httptest.NewServer(bs)
			defer srv.Close()
			l, err := layout.Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			p := filepath.Join(PartialDir(l), "sha256", d.Digest.Encoded())
			if tt.partial != nil {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, tt.partial, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o := buildOptions([]Option{WithCredentials(credentials.NewMemoryStore())})
			sess, err := o.connect(context.Background(), srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := ParseReference(srv.Listener.Addr().String() + "/a/b:v1")
			repo, err := sess.repository(ref)
			if err != nil {
				t.Fatal(err)
			}
			src := &resumableSource{repo: repo, sess: sess}
			rc, err := src.Fetch(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			store := &layoutStore{l: l, o: o}
			if err := store.Push(context.Background(), d, rc); err != nil {
				t.Fatal(err)
			}
			if err := l.Blobs().Verify(context.Background(), d.Digest, d.Size); err != nil {
				t.Fatalf("stored blob: %v", err)
			}
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Fatalf("partial file left behind: %v", err)
			}
			bs.mu.Lock()
			defer bs.mu.Unlock()
			if tt.wantRange == "none" {
				if len(bs.ranges) != 0 {
					t.Fatalf("a complete partial download was fetched again: %q", bs.ranges)
				}
				return
			}
			if len(bs.ranges) == 0 || bs.ranges[0] != tt.wantRange {
				t.Fatalf("requests: %q, want the first with Range %q", bs.ranges, tt.wantRange)
			}
			if tt.name == "corrupt part" && (len(bs.ranges) != 2 || bs.ranges[1] != "") {
				t.Fatalf("a corrupt partial download was not fetched again whole: %q", bs.ranges)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
