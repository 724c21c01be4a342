package vfs

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layertest"
)

func openStore(t *testing.T) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(filepath.Join(t.TempDir(), "store"), snapshot.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStreamFallsBack: a layer Ensure never reads (another process made
// its snapshot) leaves the streamed rootfs behind: the top snapshot is
// copied instead.
func TestStreamFallsBack(t *testing.T) {
	needRoot(t)
	_, l, img := layertest.OpenStandard(t)
	s := openStore(t)
	d, err := New(s, s.Options().Owners())
	must(t, err)
	bundle := t.TempDir()
	rs := d.StreamRootfs(context.Background(), s, filepath.Join(bundle, snapshot.RootfsDir), nil, len(img.Manifest.Layers)).(*rootfsStream)
	defer rs.Stop()
	var chain []*snapshot.Info
	var parent *snapshot.Info
	for i, ld := range img.Manifest.Layers {
		layer := snapshot.Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
			return l.Blobs().Open(ld.Digest, ld.Size)
		}}
		streamed := rs.Layer(parent, layer)
		if i == 1 {
			streamed = layer // as if another process had extracted it
		}
		in, err := s.Ensure(context.Background(), d, parent, streamed)
		rs.Settle()
		must(t, err)
		chain = append(chain, in)
		parent = in
	}
	c := &snapshot.Container{Dir: bundle, Chain: chain}
	must(t, rs.Create(context.Background(), c))
	if !rs.broken {
		t.Error("the stream was not abandoned")
	}
	want := filepath.Join(t.TempDir(), "copy")
	must(t, copyTree(context.Background(), parent.FS(), want, copyOptions{}))
	layertest.SameTree(t, c.Rootfs(), want)
}
