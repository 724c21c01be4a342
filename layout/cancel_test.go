package layout

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/ctxio/ctxtest"
)

// layoutState is what a cancelled operation must leave as it was: the
// blobs and index.json.
func layoutState(t *testing.T, l *Layout) string {
	t.Helper()
	idx, err := os.ReadFile(filepath.Join(l.Dir(), IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(blobList(t, l), "\n") + "\n" + string(idx)
}

// checkAsItWas checks that err is the cancel's and l is as it was.
func checkAsItWas(t *testing.T, l *Layout, before string, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if after := layoutState(t, l); after != before {
		t.Fatalf("the layout changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := stagingFiles(t, l); n != 0 {
		t.Fatalf("%d staging files left", n)
	}
	mustFsckClean(t, l)
}

// imageOfRandomLayers stores an image with n layers of size random bytes
// each (tars of one file, gzip) and names it.
func imageOfRandomLayers(t *testing.T, l *Layout, n, size int) ocispec.Descriptor {
	t.Helper()
	cfg := NewConfig(mustPlatform(t, "linux/amd64"))
	var layers []ocispec.Descriptor
	for i := 0; i < n; i++ {
		ly, err := l.PutLayer(context.Background(), bytes.NewReader(testTar(t, size)))
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
	if err := l.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}
	return md
}

func TestImportCancelled(t *testing.T) {
	l := newTestLayout(t)
	imageOfRandomLayers(t, l, 1, 1<<10)
	before := layoutState(t, l)
	in := testTar(t, 6<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelAfter{r: bytes.NewReader(in), n: 2 << 20, cancel: cancel}
	_, err := l.Import(ctx, r, ImportOptions{Ref: "v2"})
	checkAsItWas(t, l, before, err)
}

func TestCopyImageCancelled(t *testing.T) {
	src := newTestLayout(t)
	md := imageOfRandomLayers(t, src, 3, 3<<20)
	t.Run("between blobs", func(t *testing.T) {
		dst := newTestLayout(t)
		before := layoutState(t, dst)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		copied := 0
		_, err := CopyImage(ctx, dst, src, md, CopyOptions{OnBlob: func(ocispec.Descriptor, blob.CopyMethod) {
			copied++
			cancel()
		}})
		if copied == 0 {
			t.Fatal("no blob was copied before the cancel")
		}
		checkAsItWas(t, dst, before, err)
	})
	t.Run("while hashing", func(t *testing.T) {
		// Without seals every blob linked is hashed first.
		if err := os.RemoveAll(filepath.Join(src.Dir(), StateDir, "seals")); err != nil {
			t.Fatal(err)
		}
		dst := newTestLayout(t)
		before := layoutState(t, dst)
		_, err := CopyImage(ctxtest.CancelAtCheck(6), dst, src, md, CopyOptions{})
		checkAsItWas(t, dst, before, err)
		if _, err := CopyImage(context.Background(), dst, src, md, CopyOptions{}); err != nil {
			t.Fatalf("copy after the cancelled one: %v", err)
		}
	})
}

func TestConvertCancelled(t *testing.T) {
	l := newTestLayout(t)
	md := imageOfRandomLayers(t, l, 2, 3<<20)
	before := layoutState(t, l)
	// Checks: before the first layer, the recompression's first read,
	// then each megabyte of it.
	_, err := Convert(ctxtest.CancelAtCheck(3), l, md, ConvertOptions{Compression: CompressionZstd})
	checkAsItWas(t, l, before, err)
}

func TestGCCancelled(t *testing.T) {
	l := newTestLayout(t)
	imageOfRandomLayers(t, l, 1, 1<<10)
	garbage, err := l.PutBytes(ocispec.MediaTypeImageLayer, []byte("garbage"))
	if err != nil {
		t.Fatal(err)
	}
	before := layoutState(t, l)
	l.Close() // Init's hold

	// A writer holds the layout: gc waits for it, until cancelled.
	w, err := Open(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Hold(); err != nil {
		t.Fatal(err)
	}
	g, err := Open(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = g.GC(ctx)
	checkAsItWas(t, l, before, err)
	w.Close()

	// Cancelled before it starts: nothing removed either.
	_, err = g.GC(ctxtest.CancelAtCheck(1))
	checkAsItWas(t, l, before, err)

	res, err := g.GC(context.Background())
	if err != nil || len(res.Removed) != 1 || res.Removed[0] != garbage.Digest {
		t.Fatalf("gc = %+v, %v", res, err)
	}
}

func TestFsckCancelled(t *testing.T) {
	l := newTestLayout(t)
	imageOfRandomLayers(t, l, 3, 1<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := l.FsckWith(ctx, FsckOptions{Progress: func(string, int64) func(int64) {
		return func(int64) { cancel() }
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("fsck = %v, want context.Canceled", err)
	}
	// Inside a blob, and while checking diffIDs.
	for _, n := range []int64{3, 12} {
		if _, err := l.FsckWith(ctxtest.CancelAtCheck(n), FsckOptions{DiffIDs: true}); !errors.Is(err, context.Canceled) {
			t.Fatalf("fsck cancelled at check %d = %v", n, err)
		}
	}
	mustFsckClean(t, l)
}

func TestVerifyImageCancelledInLayer(t *testing.T) {
	l := newTestLayout(t)
	md := imageOfRandomLayers(t, l, 1, 4<<20)
	if err := l.VerifyImage(ctxtest.CancelAtCheck(3), md, VerifyOptions{DiffIDs: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("VerifyImage = %v, want context.Canceled", err)
	}
	// The layer checker forgot the cancelled check: a new one passes.
	if err := l.VerifyImage(context.Background(), md, VerifyOptions{DiffIDs: true}); err != nil {
		t.Fatal(err)
	}
}

// A cancelled Attach (in its second file), index create and index add
// (copying an image in) leave the layout as it was.
func TestAttachAndIndexCancelled(t *testing.T) {
	l := newTestLayout(t)
	md := imageOfRandomLayers(t, l, 1, 1<<10)
	big := bytes.Repeat([]byte("x"), 4<<20)
	file := func(name string) ArtifactFile {
		return ArtifactFile{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(big)), nil }}
	}
	before := layoutState(t, l)
	_, err := l.Attach(ctxtest.CancelAtCheck(6), md, AttachOptions{ArtifactType: "a/b", Files: []ArtifactFile{file("one"), file("two")}})
	checkAsItWas(t, l, before, err)

	other := newTestLayout(t)
	src := imageOfRandomLayers(t, other, 3, 3<<20)
	before = layoutState(t, l)
	_, err = l.CreateIndex(ctxtest.CancelAtCheck(4), "multi", []IndexSource{{Layout: l, Descriptor: md}, {Layout: other, Descriptor: src}}, IndexOptions{})
	checkAsItWas(t, l, before, err)

	// index add, copying the other layout's image into an index.
	if _, err := l.CreateIndex(context.Background(), "multi", []IndexSource{{Layout: l, Descriptor: md}}, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	before = layoutState(t, l)
	_, err = l.AddToIndex(ctxtest.CancelAtCheck(4), "multi", []IndexSource{{Layout: other, Descriptor: src}}, IndexOptions{})
	checkAsItWas(t, l, before, err)
}
