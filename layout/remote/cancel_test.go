package remote

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-oci/strata/layout"
)

// A pull cancelled in the middle of a layer stops with the context's
// error and names nothing; what was downloaded of a large layer stays
// for the next pull to resume, which then finishes the image.
func TestPullCancelled(t *testing.T) {
	for _, size := range []int{resumeMinSize / 2, 3 * resumeMinSize} {
		img := newHostileImage(size)
		objs, _ := img.serve()
		h := &hostileRegistry{objects: objs, gets: map[string]int{}}
		layerKey := "blobs/" + img.layerDesc.Digest.String()
		ctx, cancel := context.WithCancel(context.Background())
		var once sync.Once
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v2/a/b/"+layerKey || r.Method != http.MethodGet {
				h.ServeHTTP(w, r)
				return
			}
			cut := false
			once.Do(func() { cut = true })
			if !cut {
				h.ServeHTTP(w, r)
				return
			}
			// Half the layer, then the cancel; the client hangs up.
			w.Header().Set("Content-Length", strconv.Itoa(len(img.layer)))
			w.Write(img.layer[:len(img.layer)/2])
			w.(http.Flusher).Flush()
			cancel()
			select {
			case <-r.Context().Done():
			case <-time.After(time.Minute):
			}
		}))
		l, err := layout.Init(filepath.Join(t.TempDir(), "layout"))
		if err != nil {
			t.Fatal(err)
		}
		ref := srv.Listener.Addr().String() + "/a/b:v1"
		_, err = Pull(ctx, l, ref, "")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("size %d: Pull = %v, want context.Canceled", size, err)
		}
		idx, err := l.Index()
		if err != nil || len(idx.Manifests) != 0 {
			t.Fatalf("size %d: a cancelled pull named %v (%v)", size, idx, err)
		}
		if ents, _ := os.ReadDir(l.Blobs().StagingDir()); len(ents) != 0 {
			t.Fatalf("size %d: staging files left: %v", size, ents)
		}
		if probs, err := l.Fsck(context.Background()); err != nil || len(probs) != 0 {
			t.Fatalf("size %d: fsck %v %v", size, probs, err)
		}
		if _, err := Pull(context.Background(), l, ref, ""); err != nil {
			t.Fatalf("size %d: pull after the cancelled one: %v", size, err)
		}
		if left := leftovers(t, l); len(left) != 0 {
			t.Fatalf("size %d: left %v", size, left)
		}
		l.Close()
		srv.Close()
	}
}

// A push cancelled in the middle of an upload stops with the context's
// error, and the registry never gets the manifest.
func TestPushCancelled(t *testing.T) {
	img := newHostileImage(3 << 20)
	src, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	objs, md := img.serve()
	for key, o := range objs {
		if strings.HasPrefix(key, "blobs/") {
			if _, err := src.PutBytes("", o.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	md, err = src.PutBytes(md.MediaType, objs["manifests/v1"].data)
	if err != nil {
		t.Fatal(err)
	}
	if err := src.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var manifests int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/":
		case r.Method == http.MethodHead:
			http.NotFound(w, r)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			w.Header().Set("Location", "/v2/a/b/blobs/uploads/u1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/blobs/uploads/"):
			// Take 1 MiB of the blob, then cancel the push.
			io.CopyN(io.Discard, r.Body, 1<<20)
			cancel()
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusInternalServerError)
		case strings.Contains(r.URL.Path, "/manifests/"):
			mu.Lock()
			manifests++
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, err = Push(ctx, src, "v1", srv.Listener.Addr().String()+"/a/b:v1", WithConcurrency(1))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Push = %v, want context.Canceled", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if manifests != 0 {
		t.Fatal("the registry got the manifest of a cancelled push")
	}
}
