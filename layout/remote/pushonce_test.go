package remote

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// uploadCounter is a registry that keeps blobs in memory, uploads slowly
// and counts the uploads of each digest.
type uploadCounter struct {
	mu      sync.Mutex
	blobs   map[string]int64 // repo@digest: size
	uploads map[digest.Digest]int
	n       int
}

func (u *uploadCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/v2/")
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case r.URL.Path == "/v2/":
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPost:
		u.n++
		w.Header().Set("Location", fmt.Sprintf("/v2/%s%d", p, u.n))
		w.WriteHeader(http.StatusAccepted)
	case strings.Contains(p, "/blobs/uploads/") && r.Method == http.MethodPut:
		repo := p[:strings.Index(p, "/blobs/uploads/")]
		d := digest.Digest(r.URL.Query().Get("digest"))
		u.mu.Unlock()
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(100 * time.Millisecond) // the other push asks meanwhile
		u.mu.Lock()
		u.blobs[repo+"@"+d.String()] = n
		u.uploads[d]++
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	case strings.Contains(p, "/blobs/") && r.Method == http.MethodHead:
		i := strings.Index(p, "/blobs/")
		d := p[i+len("/blobs/"):]
		n, ok := u.blobs[p[:i]+"@"+d]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(n))
		w.Header().Set("Docker-Content-Digest", d)
	case strings.Contains(p, "/manifests/") && r.Method == http.MethodPut:
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
	default:
		http.NotFound(w, r)
	}
}

// TestClientPushesShareUploads pushes two images sharing a layer at once
// through one Client: the shared layer is uploaded once, and only one of
// the pushes reports it as sent.
func TestClientPushesShareUploads(t *testing.T) {
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	put := func(mt string, b []byte) ocispec.Descriptor {
		d, err := l.PutBytes(mt, b)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	shared := put(ocispec.MediaTypeImageLayerGzip, []byte(strings.Repeat("shared layer ", 1000)))
	for i := range 2 {
		own := put(ocispec.MediaTypeImageLayerGzip, []byte(fmt.Sprintf("own layer %d", i)))
		cfg := put(ocispec.MediaTypeImageConfig, []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"n":%d}`, i)))
		b, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{shared, own}})
		if err := l.Tag(put(ocispec.MediaTypeImageManifest, b), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	reg := &uploadCounter{blobs: map[string]int64{}, uploads: map[digest.Digest]int{}}
	srv := httptest.NewServer(reg)
	defer srv.Close()

	var mu sync.Mutex
	sent := 0
	c := NewClient(WithProgress(func(p Progress) {
		if p.Descriptor.Digest == shared.Digest && (p.State == StateDone || p.State == StateMounted) {
			mu.Lock()
			sent++
			mu.Unlock()
		}
	}))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Push(context.Background(), l, fmt.Sprintf("v%d", i), fmt.Sprintf("%s/team/app:v%d", srv.Listener.Addr(), i))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := reg.uploads[shared.Digest]; n != 1 || sent != 1 {
		t.Fatalf("the shared layer was uploaded %d times, reported sent %d times; want 1, 1", n, sent)
	}
}
