package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/ctxio/ctxtest"
	"github.com/strata-oci/strata/layout"
)

// bigImage stores an image of n layers of size random bytes each, named
// name, in a new layout.
func bigImage(t *testing.T, name string, n, size int) (*layout.Layout, ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	var layers []ocispec.Descriptor
	for i := 0; i < n; i++ {
		data := make([]byte, size)
		rand.Read(data)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "data", Mode: 0o644, Size: int64(size)})
		tw.Write(data)
		tw.Close()
		ly, err := l.PutLayer(context.Background(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.AppendLayer(ly.DiffID); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, ly.Descriptor)
	}
	md, err := l.PutImage(cfg, layers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, name); err != nil {
		t.Fatal(err)
	}
	return l, md
}

// dirState lists every file under dir, blobs, staging files and working
// directories included, but seals (a cache).
func dirState(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "seals" {
			return filepath.SkipDir
		}
		if !e.IsDir() {
			fi, err := e.Info()
			if err != nil {
				return err
			}
			out = append(out, fmt.Sprintf("%s %v %d", p, fi.Mode(), fi.Size()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestWriteCancelled(t *testing.T) {
	src, md := bigImage(t, "x:1", 2, 3<<20)
	for _, f := range []Format{Docker, OCI} {
		ctx, cancel := context.WithCancel(context.Background())
		w := &ctxtest.Writer{W: io.Discard, N: 2 << 20, Cancel: cancel}
		err := Write(ctx, w, src, f, []Image{{Descriptor: md, Names: []string{"x:1"}}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: Write = %v, want context.Canceled", f, err)
		}
		if w.N < -(2 << 20) {
			t.Fatalf("%s: %d bytes written after the cancel", f, -w.N)
		}
	}
}

// A cancelled read leaves the destination as it was, whether the cancel
// comes while the archive is read or while its images are copied in.
func TestReadCancelled(t *testing.T) {
	src, md := bigImage(t, "x:1", 3, 2<<20)
	var a bytes.Buffer
	if err := Write(context.Background(), &a, src, Docker, []Image{{Descriptor: md, Names: []string{"x:1"}}}); err != nil {
		t.Fatal(err)
	}
	dst, _ := bigImage(t, "y:1", 1, 1<<10)
	before := dirState(t, dst.Dir())

	ctx, cancel := context.WithCancel(context.Background())
	_, err := Read(ctx, &ctxtest.Reader{R: bytes.NewReader(a.Bytes()), N: int64(a.Len() / 2), Cancel: cancel}, dst, ReadOptions{})
	cancel()
	checkAsItWas(t, dst, before, err)

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	copied := 0
	opts := ReadOptions{Copy: layout.CopyOptions{OnBlob: func(ocispec.Descriptor, blob.CopyMethod) { copied++; cancel() }}}
	_, err = Read(ctx, bytes.NewReader(a.Bytes()), dst, opts)
	if copied == 0 {
		t.Fatal("nothing was copied before the cancel")
	}
	checkAsItWas(t, dst, before, err)
}

func checkAsItWas(t *testing.T, l *layout.Layout, before string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if after := dirState(t, l.Dir()); after != before {
		t.Fatalf("the layout changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	probs, err := l.Fsck(context.Background())
	if err != nil || len(probs) > 0 {
		t.Fatalf("fsck: %v %v", probs, err)
	}
}
