package snapshot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

var (
	needRoot          = layertest.NeedRoot
	lstat             = layertest.Lstat
	must              = layertest.Must
	buildStandard     = layertest.BuildStandard
	describeTree      = layertest.DescribeTree
	withoutLinkCounts = layertest.WithoutLinkCounts
	diffTrees         = layertest.DiffTrees
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func unpack(t *testing.T, s *Store, layoutDir, bundle string, o UnpackOptions) *Record {
	t.Helper()
	l, err := layout.Open(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := s.Unpack(context.Background(), l, "v1", bundle, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestUnpackStandard(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	rec := unpack(t, s, img, bundle, UnpackOptions{})
	if len(rec.Chain) != 3 || rec.Driver != VFS {
		t.Fatalf("record: %+v", rec)
	}
	root := filepath.Join(bundle, RootfsDir)
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

func TestRebuildIdentical(t *testing.T) {
	needRoot(t)
	img, layers := buildStandard(t)
	s := openStore(t)
	rec := unpack(t, s, img, filepath.Join(t.TempDir(), "b"), UnpackOptions{})
	for i, id := range rec.Chain {
		in, err := s.Get(id.String())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := in.Rebuild(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Fatalf("layer %d: rebuilt %d bytes differ from the original %d", i, buf.Len(), len(layers[i]))
		}
		if err := in.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// A changed file no longer verifies.
	top, _ := s.Get(rec.Chain[2].String())
	if err := os.WriteFile(filepath.Join(top.FS(), "app"), []byte("run you"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := top.Verify(context.Background()); err == nil {
		t.Fatal("verify of a changed snapshot succeeded")
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
	_, err = s.Unpack(context.Background(), l, "v1", bundle, UnpackOptions{})
	if !errors.Is(err, layer.ErrDiffIDMismatch) {
		t.Fatalf("unpack: %v, want layer.ErrDiffIDMismatch", err)
	}
	infos, _ := s.List()
	if len(infos) != 1 {
		t.Fatalf("%d snapshots, want only the good base layer", len(infos))
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), TmpDir)); len(ents) != 0 {
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
	_, err = s.Unpack(ctx, l, "v1", bundle, UnpackOptions{Layer: func(i, n int, _ digest.Digest, _ bool) {
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
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), TmpDir)); len(ents) != 0 {
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
		size, count, err := diskUsage(in.FS())
		if err != nil {
			t.Fatal(err)
		}
		if in.Size != size || in.Files != count {
			t.Errorf("snapshot %s: recorded %d bytes in %d entries, the tree has %d in %d", in.ID, in.Size, in.Files, size, count)
		}
	}
}
