package snapshot

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/snapshot/layertest"
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
	if err := Apply(dir, bytes.NewReader(layertest.Tar(es...)), ApplyOptions{Whiteouts: WhiteoutDelete}, files); err != nil {
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
	if err := Apply(dir, bytes.NewReader(layer), ApplyOptions{Whiteouts: WhiteoutDelete}, Files{}); err != nil {
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
