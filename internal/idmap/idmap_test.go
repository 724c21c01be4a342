package idmap

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCloneShiftsOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (CI runs the suite as root)")
	}
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
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (CI runs the suite as root)")
	}
	if _, err := Clone([]string{filepath.Join(t.TempDir(), "missing")}, nil, nil); err == nil {
		t.Error("clone of a missing directory succeeded")
	}
	// Overlapping ranges are no user-namespace mapping.
	if _, err := UsernsFD([]Range{{0, 100000, 10}, {5, 200000, 10}}, nil); err == nil {
		t.Error("overlapping uid ranges accepted")
	}
}
