package merge_test

import (
	"bytes"
	"context"
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
