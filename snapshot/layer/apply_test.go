package layer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

var (
	needRoot = layertest.NeedRoot
	lstat    = layertest.Lstat
	must     = layertest.Must
)

// defaultACL is a system.posix_acl_default value: owner rwx, group r-x,
// mask r-x, others nothing.
func defaultACL() []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint32(2))
	for _, e := range []struct{ tag, perm uint16 }{{0x01, 7}, {0x04, 5}, {0x10, 5}, {0x20, 0}} {
		binary.Write(&b, binary.LittleEndian, e.tag)
		binary.Write(&b, binary.LittleEndian, e.perm)
		binary.Write(&b, binary.LittleEndian, uint32(0xffffffff))
	}
	return b.Bytes()
}

// TestApplyFileOwnerAndMode checks that files get exactly their entry's
// owner and mode whatever the umask, a set-gid parent or a parent's
// default ACL would give a new file: the applier skips chown and chmod
// only when creation alone gets them right.
func TestApplyFileOwnerAndMode(t *testing.T) {
	needRoot(t)
	old := unix.Umask(0o022)
	defer unix.Umask(old)
	dir := t.TempDir()
	for _, d := range []string{"plain", "sgid", "acl"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "sgid"), 0, 50); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "sgid"), 0o2775); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "acl"), "system.posix_acl_default", defaultACL(), 0); err != nil {
		t.Fatalf("set a default ACL (the test's file system must support POSIX ACLs): %v", err)
	}
	files := Files{
		".":     {Path: ".", Type: TypeDir, Mode: 0o755},
		"plain": {Path: "plain", Type: TypeDir, Mode: 0o755},
		"sgid":  {Path: "sgid", Type: TypeDir, Mode: 0o2775, GID: 50},
		"acl":   {Path: "acl", Type: TypeDir, Mode: 0o755},
	}
	tests := []struct {
		name     string
		mode     int64
		uid, gid int
	}{
		{"plain/a", 0o644, 0, 0},
		{"plain/umask-strips", 0o666, 0, 0},
		{"plain/setuid", 0o4755, 0, 0},
		{"plain/setgid-owned", 0o2755, 1000, 1000},
		{"plain/owned", 0o644, 1000, 1001},
		{"plain/none", 0, 0, 0},
		{"sgid/root", 0o644, 0, 0},
		{"sgid/owned", 0o640, 7, 8},
		{"acl/a", 0o644, 0, 0},
		{"acl/exec", 0o755, 0, 0},
	}
	var es []layertest.Entry
	for _, tc := range tests {
		es = append(es, layertest.Owned(layertest.File(tc.name, "x", tc.mode), tc.uid, tc.gid))
	}
	if err := Apply(context.Background(), dir, bytes.NewReader(layertest.Tar(es...)), ApplyOptions{Whiteouts: WhiteoutDelete}, files); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		st := lstat(t, filepath.Join(dir, tc.name))
		if got := st.Mode & 0o7777; got != uint32(tc.mode) {
			t.Errorf("%s: mode %#o, want %#o", tc.name, got, tc.mode)
		}
		if int(st.Uid) != tc.uid || int(st.Gid) != tc.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", tc.name, st.Uid, st.Gid, tc.uid, tc.gid)
		}
	}
}

// TestApplyDirectoryReplacedBetweenEntries checks that a directory the
// applier kept open for the entries before is looked up again once an
// entry replaces it or one of its parents.
func TestApplyDirectoryReplacedBetweenEntries(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	layer := layertest.Tar(
		layertest.Dir("real/", 0o755),
		layertest.File("d/x", "x", 0o644),
		layertest.Symlink("d", "real"), // d, with x, goes
		layertest.File("d/y", "y", 0o644),
		layertest.File("m/n/x", "x", 0o644),
		layertest.File("m", "file", 0o644), // m/n goes with m
		layertest.Dir("m/", 0o755),
		layertest.File("m/n/y", "y", 0o644),
		layertest.File("w/x", "x", 0o644),
		layertest.File("v", "v", 0o644),
	)
	if err := Apply(context.Background(), dir, bytes.NewReader(layer), ApplyOptions{Whiteouts: WhiteoutDelete}, Files{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{"real/y": "y", "m/n/y": "y", "w/x": "x"} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", p, b, err, want)
		}
	}
	for _, p := range []string{"real/x", "m/n/x"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", p, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dir, "d")); err != nil || l != "real" {
		t.Errorf("d: %q, %v; want a symlink to real", l, err)
	}
}

// TestApplyCancelled: a cancelled context stops the extraction at the
// next entry with the context's error.
func TestApplyCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Apply(ctx, t.TempDir(), bytes.NewReader(layertest.Tar(layertest.File("a", "a", 0o644))), ApplyOptions{Rootless: true}, Files{})
	if err != context.Canceled {
		t.Fatalf("Apply with a cancelled context: %v", err)
	}
}

// TestApplyOwnersMapped extracts a layer as a process that can give only
// some owners (a user namespace mapping 0-65536), as root standing in for
// its root: mapped owners are given, others fall back to root's with the
// xattr, per uid and gid, and commit's reading gets every image owner back.
func TestApplyOwnersMapped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	layer := layertest.Tar(
		layertest.Owned(layertest.Dir("app", 0o755), 1000, 1000),
		layertest.Owned(layertest.File("app/f", "f", 0o600), 1000, 1000),
		layertest.Owned(layertest.File("far", "x", 0o644), 70000, 70000),
		layertest.Owned(layertest.File("half", "x", 0o644), 1000, 70000),
		layertest.Owned(layertest.File("shadow", "x", 0o640), 0, 42),
		layertest.Owned(layertest.Symlink("link", "far"), 1000, 1000),
		layertest.Owned(layertest.Symlink("farlink", "far"), 70000, 70000),
	)
	m := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 65537}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 65537}}}
	files := Files{}
	if err := Apply(context.Background(), dir, bytes.NewReader(layer), ApplyOptions{Rootless: true, Owners: m}, files); err != nil {
		t.Fatal(err)
	}
	xattr := func(p string) string {
		b := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dir, p), RootlessXattr, b)
		if err != nil {
			return ""
		}
		u, g, _ := DecodeRootless(b[:n])
		return itoa(u) + ":" + itoa(g)
	}
	for p, want := range map[string][2]string{
		"app": {"1000:1000", ""}, "app/f": {"1000:1000", ""}, "shadow": {"0:42", ""},
		"far": {"0:0", "70000:70000"}, "half": {"1000:0", "0:70000"},
		"link": {"1000:1000", ""}, "farlink": {"0:0", ""},
	} {
		st := lstat(t, filepath.Join(dir, p))
		if got := itoa(int(st.Uid)) + ":" + itoa(int(st.Gid)); got != want[0] {
			t.Errorf("%s: owner %s, want %s", p, got, want[0])
		}
		if got := xattr(p); got != want[1] && !(want[1] == "" && got == "") {
			t.Errorf("%s: xattr %q, want %q", p, got, want[1])
		}
	}
	o := Ownership{Rootless: true, ToImage: m}
	for p, e := range files {
		if p == "." {
			continue
		}
		full := filepath.Join(dir, p)
		st := lstat(t, full)
		x, err := fsx.ReadXattrs(full)
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.DiskEntry(full, p, st, x, e)
		if err != nil {
			t.Fatal(err)
		}
		if got.UID != e.UID || got.GID != e.GID {
			t.Errorf("%s reads back as %d:%d, want %d:%d", p, got.UID, got.GID, e.UID, e.GID)
		}
	}
	// What a container changes in the namespace wins over the xattr.
	if err := os.Lchown(filepath.Join(dir, "far"), 33, 33); err != nil {
		t.Fatal(err)
	}
	x, _ := fsx.ReadXattrs(filepath.Join(dir, "far"))
	if u, g, _ := o.Owner("far", lstat(t, filepath.Join(dir, "far")), x); u != 33 || g != 33 {
		t.Errorf("far chowned to 33:33 reads %d:%d", u, g)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}
