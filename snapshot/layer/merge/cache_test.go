package merge_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/strata-oci/strata/snapshot/layer/merge"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// With a CacheDir, each compressed layer is opened (and decompressed)
// once, the merged tar is the same bytes, and nothing is left in the
// directory.
func TestMergeCache(t *testing.T) {
	raws := layertest.Standard(nil)
	var tars [][]byte
	for i, r := range raws {
		if i%2 == 0 {
			r = layertest.Gzip(r) // an uncompressed layer is read again
		}
		tars = append(tars, r)
	}
	want := writeMerged(t, stack(tars...), merge.Options{})
	ls := stack(tars...)
	opens := make([]int, len(ls))
	for i := range ls {
		open := ls[i].Open
		ls[i].Open = func() (io.ReadCloser, error) { opens[i]++; return open() }
	}
	dir := t.TempDir()
	got := writeMerged(t, ls, merge.Options{CacheDir: dir})
	if !bytes.Equal(got, want) {
		t.Fatal("the merged tar differs with a cache")
	}
	for i, n := range opens {
		if w := 1 + i%2; n != w {
			t.Errorf("layer %d opened %d times, want %d", i, n, w)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("cache dir holds %v (%v)", ents, err)
	}
}

func writeMerged(t *testing.T, ls []merge.Layer, o merge.Options) []byte {
	t.Helper()
	tree, err := merge.Read(context.Background(), ls, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tree.Close()
	var buf bytes.Buffer
	if err := tree.WriteTar(context.Background(), &buf, merge.WriteOptions{TempDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A layer that fails its diffID leaves no cache behind, nor do the
// layers read beside it: no file in the directory, no file left open.
func TestMergeCacheFailure(t *testing.T) {
	raws := layertest.Standard(nil)
	var tars [][]byte
	for _, r := range raws {
		tars = append(tars, layertest.Gzip(r))
	}
	ls := stack(tars...)
	for i := range ls {
		ls[i].DiffID = layertest.DiffID(raws[i])
	}
	ls[len(ls)-1].DiffID = layertest.DiffID([]byte("other"))
	dir := t.TempDir()
	before := openFiles(t)
	if _, err := merge.Read(context.Background(), ls, merge.Options{CacheDir: dir}); !errors.Is(err, merge.ErrDiffIDMismatch) {
		t.Fatalf("got %v, want a diffID mismatch", err)
	}
	if after := openFiles(t); after != before {
		t.Errorf("%d files open after a failed read, %d before", after, before)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("cache dir holds %v (%v)", ents, err)
	}
}

// openFiles counts the process's open files.
func openFiles(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
