package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
	"golang.org/x/sys/unix"
)

func TestUnpackStandard(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	rec := unpack(t, s, img, bundle, UnpackOptions{})
	if len(rec.Chain) != 3 || rec.Driver != vfs.Name {
		t.Fatalf("record: %+v", rec)
	}
	root := filepath.Join(bundle, snapshot.RootfsDir)
	for _, gone := range []string{"gone-file", "gone-dir", "opq/lower", "opq/sub", "usr/share-note", "dir-to-file/child"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTDIR) {
			t.Errorf("%s: want it deleted, got %v", gone, err)
		}
	}
	type want struct {
		path  string
		ifmt  uint32
		perm  uint32
		uid   uint32
		gid   uint32
		body  string
		link  string
		rdev  uint64
		xattr map[string]string
	}
	for _, w := range []want{
		{path: "opq", ifmt: unix.S_IFDIR, perm: 0o750},
		{path: "opq/upper", ifmt: unix.S_IFREG, perm: 0o644, body: "upper"},
		{path: "file-to-dir", ifmt: unix.S_IFDIR, perm: 0o700},
		{path: "file-to-dir/inside", ifmt: unix.S_IFREG, perm: 0o644, body: "inside"},
		{path: "dir-to-file", ifmt: unix.S_IFREG, perm: 0o640, body: "now a file"},
		{path: "usr/bin/suid", ifmt: unix.S_IFREG, perm: 0o4755},
		{path: "usr/bin/sgid", ifmt: unix.S_IFREG, perm: 0o2755},
		{path: "tmp", ifmt: unix.S_IFDIR, perm: 0o1777},
		{path: "srv", ifmt: unix.S_IFDIR, perm: 0o2775, uid: 33, gid: 33},
		{path: "srv/link", ifmt: unix.S_IFLNK, uid: 33, gid: 33, link: "../etc/motd"},
		{path: "home/alice/notes", ifmt: unix.S_IFREG, perm: 0o600, uid: 1000, gid: 1000, body: "hello alice\n"},
		{path: "etc/motd", ifmt: unix.S_IFREG, perm: 0o644, gid: 10, body: "layer two\n"},
		{path: "app-link", ifmt: unix.S_IFREG, perm: 0o644, gid: 10, body: "layer two\n"},
		{path: "usr/lib/libc.so", ifmt: unix.S_IFREG, perm: 0o755, body: "libc v2"},
		{path: "etc/abs-link", ifmt: unix.S_IFLNK, link: "/usr/lib/libc.so"},
		{path: "dev/null", ifmt: unix.S_IFCHR, perm: 0o666, rdev: unix.Mkdev(1, 3)},
		{path: "run-fifo", ifmt: unix.S_IFIFO, perm: 0o644},
		{path: "locked", ifmt: unix.S_IFDIR, perm: 0},
		{path: "zero-mode", ifmt: unix.S_IFREG, perm: 0, body: "secret"},
		{path: "usr/bin/ping-link", ifmt: unix.S_IFREG, perm: 0o755, body: "ping\n",
			xattr: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}},
	} {
		p := filepath.Join(root, w.path)
		st := lstat(t, p)
		if st.Mode&unix.S_IFMT != w.ifmt {
			t.Errorf("%s: type %o, want %o", w.path, st.Mode&unix.S_IFMT, w.ifmt)
			continue
		}
		if w.ifmt != unix.S_IFLNK && st.Mode&0o7777 != w.perm {
			t.Errorf("%s: mode %o, want %o", w.path, st.Mode&0o7777, w.perm)
		}
		if st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", w.path, st.Uid, st.Gid, w.uid, w.gid)
		}
		if w.body != "" {
			b, err := os.ReadFile(p)
			if err != nil || string(b) != w.body {
				t.Errorf("%s: body %q (%v), want %q", w.path, b, err, w.body)
			}
		}
		if w.link != "" {
			if l, _ := os.Readlink(p); l != w.link {
				t.Errorf("%s: link %q, want %q", w.path, l, w.link)
			}
		}
		if w.rdev != 0 && st.Rdev != w.rdev {
			t.Errorf("%s: rdev %x, want %x", w.path, st.Rdev, w.rdev)
		}
		for k, v := range w.xattr {
			buf := make([]byte, 256)
			n, err := unix.Lgetxattr(p, k, buf)
			if err != nil || string(buf[:n]) != v {
				t.Errorf("%s: xattr %s = %q (%v), want %q", w.path, k, buf[:max(n, 0)], err, v)
			}
		}
		if w.ifmt != unix.S_IFDIR && w.path != "etc/motd" && w.path != "app-link" && w.path != "usr/lib/libc.so" && st.Mtim.Sec != layertest.Epoch.Unix() {
			t.Errorf("%s: mtime %d, want %d", w.path, st.Mtim.Sec, layertest.Epoch.Unix())
		}
	}
	if a, b := lstat(t, filepath.Join(root, "big")), lstat(t, filepath.Join(root, "big-link")); a.Ino != b.Ino {
		t.Error("big-link is not a hardlink of big")
	}
	if a, b := lstat(t, filepath.Join(root, "etc/motd")), lstat(t, filepath.Join(root, "app-link")); a.Ino != b.Ino {
		t.Error("app-link is not a hardlink of etc/motd (a lower layer's file)")
	}
	if st := lstat(t, filepath.Join(root, "opq")); st.Mtim.Sec != layertest.Epoch.Unix() {
		t.Errorf("opq: directory mtime %d not restored after its children", st.Mtim.Sec)
	}
	// The spec: user alice, her groups, the image's command.
	sp, err := os.ReadFile(filepath.Join(bundle, SpecFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"uid": 1000`, `"gid": 1000`, `"additionalGids": [`, `"/bin/sh"`, `"path": "rootfs"`} {
		if !bytes.Contains(sp, []byte(want)) {
			t.Errorf("config.json lacks %s:\n%s", want, sp)
		}
	}
	// A second unpack shares the snapshots.
	unpack(t, s, img, filepath.Join(t.TempDir(), "b2"), UnpackOptions{})
	infos, err := s.List()
	if err != nil || len(infos) != 3 {
		t.Fatalf("snapshots: %d (%v), want 3", len(infos), err)
	}
}

func TestDiffIDMismatchLeavesNothing(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "img")
	layers := layertest.Standard(nil)
	bad := layertest.DiffID([]byte("something else"))
	if err := layertest.BuildImage(dir, "v1", layertest.Image{Layers: layers[:2], DiffIDs: []digest.Digest{layertest.DiffID(layers[0]), bad}}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	bundle := filepath.Join(t.TempDir(), "b")
	_, err = Unpack(context.Background(), s, l, "v1", bundle, UnpackOptions{})
	if !errors.Is(err, layer.ErrDiffIDMismatch) {
		t.Fatalf("unpack: %v, want ErrDiffIDMismatch", err)
	}
	infos, _ := s.List()
	if len(infos) != 1 {
		t.Fatalf("%d snapshots, want only the good base layer", len(infos))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), snapshot.TmpDir)); len(ents) != 0 {
		t.Fatalf("tmp holds %d leftovers", len(ents))
	}
	if _, err := os.Stat(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bundle dir left behind: %v", err)
	}
}

func TestUnpackInterrupted(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	l, err := layout.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bundle := filepath.Join(t.TempDir(), "b")
	// Interrupted during the second layer's extraction.
	_, err = Unpack(ctx, s, l, "v1", bundle, UnpackOptions{Layer: func(i, n int, _ digest.Digest, _ bool) {
		if i == 1 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("unpack: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(bundle); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bundle left behind: %v", err)
	}
	if infos, _ := s.List(); len(infos) != 1 {
		t.Fatalf("%d snapshots, want the first layer's only", len(infos))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), snapshot.TmpDir)); len(ents) != 0 {
		t.Fatalf("tmp holds %d leftovers", len(ents))
	}
}

// A vfs snapshot's size and entry count come from its file list; they
// must be what a walk of its tree finds.
func TestVFSUsageMatchesTree(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	unpack(t, s, img, filepath.Join(t.TempDir(), "b"), UnpackOptions{})
	infos, err := s.List()
	if err != nil || len(infos) != 3 {
		t.Fatalf("snapshots: %d (%v), want 3", len(infos), err)
	}
	for _, in := range infos {
		size, count, err := treeUsage(in.FS())
		if err != nil {
			t.Fatal(err)
		}
		if in.Size != size || in.Files != count {
			t.Errorf("snapshot %s: recorded %d bytes in %d entries, the tree has %d in %d", in.ID, in.Size, in.Files, size, count)
		}
	}
}

func TestOverlayFallbackHook(t *testing.T) {
	s := openStore(t)
	saved := overlayCheck
	t.Cleanup(func() { overlayCheck = saved })
	overlayCheck = func(string, overlay.Xattrs) error {
		return fmt.Errorf("%w: refused by the test", overlay.ErrUnsupported)
	}
	if _, err := unpackDriver(s, UnpackOptions{Driver: overlay.Name}); !errors.Is(err, overlay.ErrUnsupported) {
		t.Errorf("without a fallback: %v, want ErrUnsupported", err)
	}
	var reason error
	d, err := unpackDriver(s, UnpackOptions{Driver: overlay.Name, OnFallback: func(err error) { reason = err }})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != vfs.Name {
		t.Errorf("fallback driver is %s", d.Name())
	}
	if !errors.Is(reason, overlay.ErrUnsupported) || !strings.Contains(reason.Error(), "refused by the test") {
		t.Errorf("fallback reason %v", reason)
	}
}

func TestOverlayBundleErrors(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if _, err := Open(dir, snapshot.StoreOptions{}); !errors.Is(err, ErrNotUnpacked) {
		t.Errorf("no record: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(`{"driver":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, snapshot.StoreOptions{}); !errors.Is(err, ErrNotUnpacked) {
		t.Errorf("garbage: %v, want ErrNotUnpacked", err)
	}
	store := filepath.Join(t.TempDir(), "store")
	rec := `{"driver":"overlay","store":"` + store + `","chain":["sha256:` + strings.Repeat("b", 64) + `"]}`
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, snapshot.StoreOptions{}); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("missing snapshot: %v, want ErrNotFound", err)
	}
	// A vfs bundle has nothing to mount.
	img, _ := buildStandard(t)
	vb := filepath.Join(t.TempDir(), "vfs")
	unpack(t, openStore(t), img, vb, UnpackOptions{})
	b, err := Open(vb, snapshot.StoreOptions{})
	must(t, err)
	defer b.Close()
	if err := b.Mount(); !errors.Is(err, snapshot.ErrNoMount) {
		t.Errorf("vfs bundle: %v, want ErrNoMount", err)
	}
	if err := b.Unmount(); !errors.Is(err, snapshot.ErrNoMount) {
		t.Errorf("vfs bundle: %v, want ErrNoMount", err)
	}
}

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
	rec := unpack(t, s, dir, bundle, UnpackOptions{Driver: overlay.Name})
	rootfs := filepath.Join(bundle, snapshot.RootfsDir)

	if b, err := os.ReadFile(filepath.Join(rootfs, "fake", "kept")); err != nil || string(b) != "lower\n" {
		t.Errorf("fake/kept through the mount = %q, %v: an image xattr made the directory opaque", b, err)
	}
	topSnap, err := s.Get(overlay.Name + "/" + rec.Chain[len(rec.Chain)-1].Encoded())
	must(t, err)
	topFS := topSnap.FS()
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

// treeUsage sums the apparent size of the regular files under dir and
// counts its entries, the root left out.
func treeUsage(dir string) (size, count int64, err error) {
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		count++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
		}
		return nil
	})
	return size, count - 1, err
}
