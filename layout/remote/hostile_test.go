package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// hostileBody is how the fake registry answers for one object.
type hostileBody struct {
	mediaType string
	data      []byte
	// length is the Content-Length announced (HEAD and GET); -1 sends the
	// body chunked, with no length.
	length int64
	// extra is sent after data; endless keeps sending random bytes after
	// it until the client hangs up.
	extra   []byte
	endless bool
}

// hostileRegistry serves one repository (a/b) the way a broken or
// malicious registry would, and counts what it was asked for.
type hostileRegistry struct {
	objects map[string]hostileBody // "manifests/REF" or "blobs/DIGEST"
	mu      sync.Mutex
	gets    map[string]int
}

func (h *hostileRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/v2/" {
		return
	}
	key, ok := strings.CutPrefix(r.URL.Path, "/v2/a/b/")
	o, found := h.objects[key]
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	if r.Method == http.MethodGet {
		h.mu.Lock()
		h.gets[key]++
		h.mu.Unlock()
	}
	if o.mediaType != "" {
		w.Header().Set("Content-Type", o.mediaType)
	}
	if strings.HasPrefix(key, "manifests/") {
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(o.data).String())
	}
	if o.length >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(o.length, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if o.length < 0 {
		// Chunked for real: unflushed, net/http would count a short
		// body and announce its length.
		w.(http.Flusher).Flush()
	}
	if _, err := w.Write(o.data); err != nil {
		return
	}
	if _, err := w.Write(o.extra); err != nil {
		return
	}
	if !o.endless {
		return
	}
	junk := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(1, 2))
	for {
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		if _, err := w.Write(junk); err != nil {
			return
		}
	}
}

func (h *hostileRegistry) count(key string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.gets[key]
}

// hostileImage is an image whose parts a test may make lie.
type hostileImage struct {
	config, layer []byte
	configDesc    ocispec.Descriptor
	layerDesc     ocispec.Descriptor
}

func newHostileImage(layerSize int) *hostileImage {
	layer := make([]byte, layerSize)
	rng := rand.New(rand.NewPCG(uint64(layerSize), 7))
	for i := range layer {
		layer[i] = byte(rng.Uint32())
	}
	p := platforms.DefaultSpec()
	config, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	})
	return &hostileImage{
		config: config, layer: layer,
		configDesc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		layerDesc:  ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))},
	}
}

// serve returns the registry's objects for the image: tag v1 names its
// manifest, and every blob is served honestly unless changed afterwards.
func (img *hostileImage) serve() (map[string]hostileBody, ocispec.Descriptor) {
	m, _ := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    img.configDesc,
		Layers:    []ocispec.Descriptor{img.layerDesc},
	})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m))}
	mb := hostileBody{mediaType: md.MediaType, data: m, length: md.Size}
	return map[string]hostileBody{
		"manifests/v1":                            mb,
		"manifests/" + md.Digest.String():         mb,
		"blobs/" + img.configDesc.Digest.String(): {data: img.config, length: int64(len(img.config))},
		"blobs/" + img.layerDesc.Digest.String():  {data: img.layer, length: int64(len(img.layer))},
	}, md
}

// pullFrom pulls a/b:v1 from h into a new layout, with a deadline: a
// download that does not stop at what its descriptor declares would run
// until the disk is full.
func pullFrom(t *testing.T, h *hostileRegistry) (*layout.Layout, error) {
	t.Helper()
	h.gets = map[string]int{}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	l, err := layout.Init(filepath.Join(t.TempDir(), "layout"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = Pull(ctx, l, srv.Listener.Addr().String()+"/a/b:v1", "", WithCredentials(credentials.NewMemoryStore()))
	if ctx.Err() != nil {
		t.Fatalf("the pull ran until its deadline: %v", err)
	}
	return l, err
}

// leftovers lists what a pull left in the layout's partial and staging
// directories.
func leftovers(t *testing.T, l *layout.Layout) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{PartialDir(l), l.Blobs().StagingDir()} {
		filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
			if err == nil && !e.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// TestPullBounded serves images whose descriptors or bodies lie: every
// download stops at the size its descriptor declares, manifests and
// configs over their limit are refused before they are fetched, and no
// partial or staging file of a failed download is left behind.
func TestPullBounded(t *testing.T) {
	const big = 3 * resumeMinSize // resumable: goes through a partial file
	layerKey := func(img *hostileImage) string { return "blobs/" + img.layerDesc.Digest.String() }
	endless := func(img *hostileImage, objs map[string]hostileBody, _ *ocispec.Descriptor) {
		objs[layerKey(img)] = hostileBody{data: img.layer, length: -1, endless: true}
	}
	longer := func(img *hostileImage, objs map[string]hostileBody, _ *ocispec.Descriptor) {
		objs[layerKey(img)] = hostileBody{data: img.layer, length: -1, extra: []byte("more")}
	}
	layerName := func(img *hostileImage, _ ocispec.Descriptor) string { return img.layerDesc.Digest.String() }
	tests := []struct {
		name      string
		layerSize int
		descs     func(img *hostileImage)                                                      // lie in descriptors
		bodies    func(img *hostileImage, objs map[string]hostileBody, md *ocispec.Descriptor) // lie in answers
		wantErr   error
		wantIn    func(img *hostileImage, md ocispec.Descriptor) string // the error names it
		notFetch  func(img *hostileImage, md ocispec.Descriptor) string // never requested
	}{
		{name: "honest", layerSize: big},
		{name: "honest small", layerSize: 1000},
		{
			name: "layer of 2^62 bytes, endless body", layerSize: big,
			descs:    func(img *hostileImage) { img.layerDesc.Size = 1 << 62 },
			bodies:   endless,
			wantErr:  syscall.ENOSPC,
			wantIn:   layerName,
			notFetch: func(img *hostileImage, _ ocispec.Descriptor) string { return layerKey(img) },
		},
		{name: "large layer, endless body", layerSize: big, bodies: endless, wantErr: blob.ErrSizeMismatch, wantIn: layerName},
		{name: "small layer, endless body", layerSize: 1000, bodies: endless, wantErr: blob.ErrSizeMismatch, wantIn: layerName},
		{name: "large layer longer than declared", layerSize: big, bodies: longer, wantErr: blob.ErrSizeMismatch, wantIn: layerName},
		{name: "small layer longer than declared", layerSize: 1000, bodies: longer, wantErr: blob.ErrSizeMismatch, wantIn: layerName},
		{
			name: "large layer with wrong bytes", layerSize: big,
			bodies: func(img *hostileImage, objs map[string]hostileBody, _ *ocispec.Descriptor) {
				bad := bytes.Clone(img.layer)
				bad[len(bad)/2] ^= 1
				objs[layerKey(img)] = hostileBody{data: bad, length: int64(len(bad))}
			},
			wantErr: blob.ErrDigestMismatch,
			wantIn:  layerName,
		},
		{
			name: "manifest over the limit", layerSize: 1000,
			bodies: func(_ *hostileImage, objs map[string]hostileBody, md *ocispec.Descriptor) {
				m := objs["manifests/v1"]
				m.data = append(bytes.Clone(m.data), bytes.Repeat([]byte(" "), layout.MaxManifestSize)...)
				m.length = int64(len(m.data))
				md.Digest, md.Size = digest.FromBytes(m.data), m.length
				objs["manifests/v1"] = m
				objs["manifests/"+md.Digest.String()] = m
			},
			wantErr:  layout.ErrTooLarge,
			wantIn:   func(_ *hostileImage, md ocispec.Descriptor) string { return md.Digest.String() },
			notFetch: func(_ *hostileImage, md ocispec.Descriptor) string { return "manifests/" + md.Digest.String() },
		},
		{
			name: "config over the limit", layerSize: 1000,
			descs: func(img *hostileImage) {
				img.config = append(img.config, bytes.Repeat([]byte(" "), layout.MaxConfigSize)...)
				img.configDesc.Digest, img.configDesc.Size = digest.FromBytes(img.config), int64(len(img.config))
			},
			bodies: func(img *hostileImage, objs map[string]hostileBody, _ *ocispec.Descriptor) {
				objs["blobs/"+img.configDesc.Digest.String()] = hostileBody{data: img.config, length: -1, endless: true}
			},
			wantErr:  layout.ErrTooLarge,
			wantIn:   func(img *hostileImage, _ ocispec.Descriptor) string { return img.configDesc.Digest.String() },
			notFetch: func(img *hostileImage, _ ocispec.Descriptor) string { return "blobs/" + img.configDesc.Digest.String() },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := newHostileImage(tt.layerSize)
			if tt.descs != nil {
				tt.descs(img)
			}
			objs, md := img.serve()
			if tt.bodies != nil {
				tt.bodies(img, objs, &md)
			}
			checkPull(t, &hostileRegistry{objects: objs}, img, md, tt.wantErr, tt.wantIn, tt.notFetch)
		})
	}
}

func checkPull(t *testing.T, h *hostileRegistry, img *hostileImage, md ocispec.Descriptor, wantErr error,
	wantIn, notFetch func(*hostileImage, ocispec.Descriptor) string) {
	t.Helper()
	l, err := pullFrom(t, h)
	if wantErr == nil {
		if err != nil {
			t.Fatal(err)
		}
		if probs, err := l.Fsck(context.Background()); err != nil || len(probs) != 0 {
			t.Fatalf("fsck: %v %v", probs, err)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("pull: %v; want %v", err, wantErr)
	}
	if s := wantIn(img, md); !strings.Contains(err.Error(), s) {
		t.Fatalf("pull: %v; the error does not name %s", err, s)
	}
	if notFetch != nil {
		if k := notFetch(img, md); h.count(k) != 0 {
			t.Fatalf("%s was requested %d times", k, h.count(k))
		}
	}
	if left := leftovers(t, l); len(left) != 0 {
		t.Fatalf("a failed download left %q", left)
	}
	if l.Blobs().Has(img.layerDesc.Digest, -1) {
		t.Fatal("the lying layer became a blob")
	}
}

// TestPartialFailingVerificationRemoved: a partial download that an
// earlier pull left, completed by a registry that sends wrong bytes, is
// retried from zero once and then removed, not kept for the next pull.
func TestPartialFailingVerificationRemoved(t *testing.T) {
	img := newHostileImage(3 * resumeMinSize)
	objs, md := img.serve()
	bad := bytes.Clone(img.layer)
	bad[len(bad)-1] ^= 1
	objs["blobs/"+img.layerDesc.Digest.String()] = hostileBody{data: bad, length: int64(len(bad))}
	h := &hostileRegistry{objects: objs, gets: map[string]int{}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	l, err := layout.Init(filepath.Join(t.TempDir(), "layout"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := filepath.Join(PartialDir(l), "sha256", img.layerDesc.Digest.Encoded())
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, img.layer[:resumeMinSize], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Pull(context.Background(), l, srv.Listener.Addr().String()+"/a/b:v1", "", WithCredentials(credentials.NewMemoryStore()))
	if !errors.Is(err, blob.ErrDigestMismatch) || !strings.Contains(err.Error(), img.layerDesc.Digest.String()) {
		t.Fatalf("pull: %v", err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the partial download that failed verification is still there: %v", err)
	}
	if n := h.count("blobs/" + img.layerDesc.Digest.String()); n != 2 {
		t.Fatalf("the layer was fetched %d times, want 2 (resumed, then whole)", n)
	}
	_ = md
}
