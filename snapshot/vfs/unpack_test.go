package vfs_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
)

var (
	needRoot = layertest.NeedRoot
	must     = layertest.Must
)

// newDriver opens the driver name for s's process, as an unpack does.
func newDriver(name string, s *snapshot.Store) (snapshot.Driver, error) {
	owners := s.Options().Owners()
	if name == overlay.Name {
		return overlay.NewDriver(s, owners, overlay.DriverOptions{Check: overlay.Check})
	}
	return vfs.New(s, owners)
}

func openStore(t *testing.T) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(filepath.Join(t.TempDir(), "store"), snapshot.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func unpack(t *testing.T, s *snapshot.Store, layoutDir, bdir string, o bundle.UnpackOptions) *bundle.Record {
	t.Helper()
	l, err := layout.Open(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := bundle.Unpack(context.Background(), s, l, "v1", bdir, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestStreamedRootfs: a vfs rootfs built from the layer streams is the
// tree a copy of the top snapshot gives, whether no layer, the base, or
// every layer was in the store already.
func TestStreamedRootfs(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "img")
	layers := layertest.Standard(nil)
	must(t, layertest.BuildImage(dir, "v1", layertest.Image{Layers: layers, Cmd: []string{"/bin/sh"}}))
	must(t, layertest.BuildImage(dir, "base", layertest.Image{Layers: layers[:1], Cmd: []string{"/bin/sh"}}))
	l, err := layout.Open(dir)
	must(t, err)
	defer l.Close()
	for _, tc := range []struct {
		name string
		warm []string // images unpacked into the store first
	}{
		{"cold", nil},
		{"warm-base", []string{"base"}},
		{"warm", []string{"v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			for _, ref := range tc.warm {
				_, err := bundle.Unpack(context.Background(), s, l, ref, filepath.Join(t.TempDir(), "warm"), bundle.UnpackOptions{})
				must(t, err)
			}
			bdir := filepath.Join(t.TempDir(), "b")
			rec, err := bundle.Unpack(context.Background(), s, l, "v1", bdir, bundle.UnpackOptions{})
			must(t, err)
			top, err := s.Get(rec.Chain[len(rec.Chain)-1].Encoded())
			must(t, err)
			want := filepath.Join(t.TempDir(), "copy")
			must(t, vfs.CopyTree(context.Background(), top.FS(), want, vfs.CopyOptions{}))
			layertest.SameTree(t, filepath.Join(bdir, snapshot.RootfsDir), want)
		})
	}
}

// TestSnapshotMadeElsewhere: when another process makes a layer's
// snapshot while an unpack is under way, the unpack uses it, and a vfs
// rootfs, no longer built from every layer's stream, is the top
// snapshot's copy.
func TestSnapshotMadeElsewhere(t *testing.T) {
	needRoot(t)
	for _, drv := range []string{vfs.Name, overlay.Name} {
		t.Run(drv, func(t *testing.T) {
			dir, l, img := layertest.OpenStandard(t)
			s := openStore(t)
			other, err := snapshot.Open(s.Root(), snapshot.StoreOptions{})
			must(t, err)
			defer other.Close()
			od, err := newDriver(drv, other)
			must(t, err)
			var base *snapshot.Info
			bdir := filepath.Join(t.TempDir(), "b")
			o := bundle.UnpackOptions{Driver: drv, Layer: func(i, n int, d digest.Digest, missing bool) {
				if i != 1 {
					return
				}
				// The other process makes layer 1's snapshot first, and
				// layer 0's too when it is not in place yet (vfs puts it
				// there once layer 1 is prepared from it: the unpack
				// then takes the other's and drops its own).
				infos, err := other.List()
				must(t, err)
				if want := map[string]int{vfs.Name: 0, overlay.Name: 1}[drv]; len(infos) != want {
					t.Fatalf("%d snapshots before layer 1, want %d", len(infos), want)
				}
				for i := range 2 {
					ld := img.Manifest.Layers[i]
					in, err := other.Ensure(context.Background(), od, base, snapshot.Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
						return l.Blobs().Open(ld.Digest, ld.Size)
					}})
					must(t, err)
					if i == 0 {
						base = in
					}
				}
			}}
			rec := unpack(t, s, dir, bdir, o)
			if drv == overlay.Name {
				t.Cleanup(func() { _ = overlay.Unmount(filepath.Join(bdir, snapshot.RootfsDir)) })
			}
			if base == nil || len(rec.Chain) != 3 {
				t.Fatalf("record %+v, layer callback ran: %v", rec, base != nil)
			}
			if left, _ := os.ReadDir(filepath.Join(s.Root(), snapshot.TmpDir)); len(left) != 0 {
				t.Errorf("staging left behind: %v", left)
			}
			if drv == vfs.Name {
				top, err := s.Get(rec.Chain[2].Encoded())
				must(t, err)
				want := filepath.Join(t.TempDir(), "copy")
				must(t, vfs.CopyTree(context.Background(), top.FS(), want, vfs.CopyOptions{}))
				layertest.SameTree(t, filepath.Join(bdir, snapshot.RootfsDir), want)
			}
		})
	}
}
