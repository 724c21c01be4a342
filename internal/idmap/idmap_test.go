package idmap

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestCloneShiftsOwners(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(f, 33, 7); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		uids, gids []Range
		uid, gid   uint32
	}{
		{"shifted", []Range{{0, 100000, 65536}}, []Range{{0, 200000, 65536}}, 100033, 200007},
		{"two ranges", []Range{{0, 100000, 10}, {10, 500000, 100}}, []Range{{0, 300000, 8}, {8, 0, 1}}, 500023, 300007},
		{"identity when empty", nil, nil, 33, 7},
		{"unmapped is overflow", []Range{{1000, 100000, 10}}, []Range{{1000, 100000, 10}}, 65534, 65534},
	} {
		m, err := Clone([]string{dir, dir}, tc.uids, tc.gids)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		paths := m.Paths()
		if len(paths) != 2 {
			t.Fatalf("%s: %d paths", tc.name, len(paths))
		}
		for _, p := range paths {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(p, "f"), &st); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if st.Uid != tc.uid || st.Gid != tc.gid {
				t.Errorf("%s: owner %d:%d, want %d:%d", tc.name, st.Uid, st.Gid, tc.uid, tc.gid)
			}
		}
		m.Close()
	}
	// The directory itself is untouched.
	var st unix.Stat_t
	if err := unix.Lstat(f, &st); err != nil || st.Uid != 33 || st.Gid != 7 {
		t.Errorf("original owner %d:%d (%v)", st.Uid, st.Gid, err)
	}
}

func TestCloneErrors(t *testing.T) {
	testenv.RequireRoot(t)
	if _, err := Clone([]string{filepath.Join(t.TempDir(), "missing")}, nil, nil); err == nil {
		t.Error("clone of a missing directory succeeded")
	}
	// Overlapping ranges are no user-namespace mapping.
	if _, err := UsernsFD([]Range{{0, 100000, 10}, {5, 200000, 10}}, nil); err == nil {
		t.Error("overlapping uid ranges accepted")
	}
}

// TestAttachDetach: attached clones show shifted owners at their mount
// points; DetachAll unmounts and removes them and never deletes a file.
func TestAttachDetach(t *testing.T) {
	testenv.RequireRoot(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Clone([]string{src}, []Range{{0, 100000, 10}}, []Range{{0, 100000, 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := filepath.Join(t.TempDir(), "idmap")
	paths, detach, err := m.Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(paths[0], "f"), &st); err != nil || st.Uid != 100000 {
		t.Fatalf("attached clone: owner %d (%v), want 100000", st.Uid, err)
	}
	if err := detach(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left after detach: %v", dir, err)
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Errorf("detach touched the source: %v", err)
	}
	if err := DetachAll(dir); err != nil {
		t.Errorf("DetachAll of a missing directory: %v", err)
	}
	// An entry that holds a file is not a mount point: refused, kept.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "0"), 0o700))
	must(os.WriteFile(filepath.Join(dir, "0", "keep"), nil, 0o644))
	if err := DetachAll(dir); err == nil {
		t.Error("DetachAll removed a directory holding a file")
	}
	if _, err := os.Stat(filepath.Join(dir, "0", "keep")); err != nil {
		t.Errorf("DetachAll deleted a file: %v", err)
	}
}
