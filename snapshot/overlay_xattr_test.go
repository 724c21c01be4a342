package snapshot

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// An image's own xattrs in overlay's namespace are stored escaped, so they
// cannot act as overlay metadata; an opaque marker survives its directory
// being listed again later in the layer.
func TestOverlayLayerXattrsAndOpaqueOrder(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "img")
	base := layertest.Tar(
		layertest.Dir("fake", 0o755), layertest.File("fake/kept", "lower\n", 0o644),
		layertest.Dir("real", 0o755), layertest.File("real/hidden", "lower\n", 0o644),
	)
	top := layertest.Tar(
		// Claims opacity by xattr instead of by whiteout.
		layertest.WithXattrs(layertest.Dir("fake", 0o755), map[string]string{"trusted.overlay.opaque": "y"}),
		// The opaque marker first, the directory's own entry after it.
		layertest.Opaque("real"),
		layertest.Dir("real", 0o750),
		layertest.File("real/new", "upper\n", 0o644),
	)
	if err := layertest.BuildImage(dir, "v1", layertest.Image{Layers: [][]byte{base, top}}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "bundle")
	unmountLater(t, bundle)
	rec := unpack(t, s, dir, bundle, UnpackOptions{Driver: OverlayDriver})
	rootfs := filepath.Join(bundle, RootfsDir)

	if b, err := os.ReadFile(filepath.Join(rootfs, "fake", "kept")); err != nil || string(b) != "lower\n" {
		t.Errorf("fake/kept through the mount = %q, %v: an image xattr made the directory opaque", b, err)
	}
	topFS := filepath.Join(s.dir(OverlayDriver, rec.Chain[len(rec.Chain)-1]), FSDir)
	v := make([]byte, 16)
	n, err := unix.Lgetxattr(filepath.Join(topFS, "fake"), "trusted.overlay.overlay.opaque", v)
	if err != nil || string(v[:n]) != "y" {
		t.Errorf("layer directory: escaped xattr trusted.overlay.overlay.opaque: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(topFS, "fake"), "trusted.overlay.opaque", v); err != unix.ENODATA {
		t.Errorf("layer directory carries overlay's opaque xattr from the image: %v", err)
	}

	if _, err := os.Lstat(filepath.Join(rootfs, "real", "hidden")); !os.IsNotExist(err) {
		t.Errorf("real/hidden visible through the mount (%v): the opaque marker was lost when real/ was listed again", err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "real", "new")); err != nil || string(b) != "upper\n" {
		t.Errorf("real/new = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "real")); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("real/ mode %v, %v: want the later entry's 0750", fi.Mode().Perm(), err)
	}
}
