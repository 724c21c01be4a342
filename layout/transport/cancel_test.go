package transport

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/ctxio/ctxtest"
	"github.com/strata-oci/strata/layout"
)

// randomImage makes a layout at dir with one image, named name, of n
// layers of size random bytes.
func randomImage(t *testing.T, dir, name string, n, size int) {
	t.Helper()
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
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
	// Without seals every blob linked out of the layout is hashed.
	if err := os.RemoveAll(filepath.Join(dir, layout.StateDir, "seals")); err != nil {
		t.Fatal(err)
	}
}

// tree lists every file under dir but seals (a cache), with its size; ""
// when dir does not exist.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p == dir {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if e.IsDir() && e.Name() == "seals" {
			return filepath.SkipDir
		}
		if fi, err := e.Info(); err == nil && !e.IsDir() {
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

// A cancelled copy stops with the context's error and leaves every
// destination as it was: a layout it created is gone, an existing one
// holds what it held, and no archive or temporary file is left.
func TestCopyCancelled(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	randomImage(t, src, "v1", 3, 2<<20)
	existing := filepath.Join(dir, "existing")
	randomImage(t, existing, "other", 1, 1<<10)
	archive := filepath.Join(dir, "out", "app.tar")
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		t.Fatal(err)
	}
	saved := filepath.Join(dir, "saved.tar")
	if _, err := copyNames(t, context.Background(), "oci:"+src+":v1", "docker-archive:"+saved+":x:1", CopyOptions{}); err != nil {
		t.Fatal(err)
	}

	onFirstBlob := func(cancel context.CancelFunc) CopyOptions {
		var o CopyOptions
		o.Copy.OnBlob = func(ocispec.Descriptor, blob.CopyMethod) { cancel() }
		return o
	}
	tests := []struct {
		name     string
		src, dst string
		watch    string
		ctx      func() (context.Context, CopyOptions)
	}{
		{"to a new layout", "oci:" + src + ":v1", "oci:" + filepath.Join(dir, "new") + ":v1", filepath.Join(dir, "new"), func() (context.Context, CopyOptions) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, onFirstBlob(cancel)
		}},
		{"into a layout", "oci:" + src + ":v1", "oci:" + existing + ":v1", existing, func() (context.Context, CopyOptions) {
			// A full copy checks 27 times: stop halfway.
			return ctxtest.CancelAtCheck(12), CopyOptions{}
		}},
		{"to an archive", "oci:" + src + ":v1", "docker-archive:" + archive + ":x:1", filepath.Dir(archive), func() (context.Context, CopyOptions) {
			// 17 checks in all: past the image's check, among the
			// blobs written.
			return ctxtest.CancelAtCheck(9), CopyOptions{}
		}},
		{"from an archive", "docker-archive:" + saved, "oci:" + existing + ":v1", existing, func() (context.Context, CopyOptions) {
			// 43 checks in all: while the archive is read.
			return ctxtest.CancelAtCheck(15), CopyOptions{}
		}},
		{"from an archive, while copying in", "docker-archive:" + saved, "oci:" + existing + ":v1", existing, func() (context.Context, CopyOptions) {
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, onFirstBlob(cancel)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tree(t, tt.watch)
			ctx, o := tt.ctx()
			_, err := copyNames(t, ctx, tt.src, tt.dst, o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Copy = %v, want context.Canceled", err)
			}
			if after := tree(t, tt.watch); after != before {
				t.Fatalf("%s changed:\nbefore:\n%s\nafter:\n%s", tt.watch, before, after)
			}
		})
	}
}

func copyNames(t *testing.T, ctx context.Context, from, to string, o CopyOptions) ([]Image, error) {
	t.Helper()
	src, err := ParseSource(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ParseDestination(to)
	if err != nil {
		t.Fatal(err)
	}
	return Copy(ctx, src, dst, o)
}
