package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mountT mounts and unmounts in t.Cleanup.
func mountT(t *testing.T, target string, o Options) {
	t.Helper()
	if err := Mount(target, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ok, _ := IsMounted(target); ok {
			if err := Unmount(target); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// manyLayers makes n layer directories under base with paths longer
// than fsconfig's 255-byte string limit. Layer i holds f<i> and common
// (content i); the top layer whites out f000.
func manyLayers(t *testing.T, base string, n int) []string {
	t.Helper()
	deep := filepath.Join(base, strings.Repeat("long-directory-name-", 12))
	var lowers []string
	for i := 0; i < n; i++ {
		d := filepath.Join(deep, fmt.Sprintf("layer-%03d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{fmt.Sprintf("f%03d", i), "common"} {
			if err := os.WriteFile(filepath.Join(d, f), []byte(fmt.Sprint(i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		lowers = append([]string{d}, lowers...) // topmost first
	}
	top, err := os.Open(lowers[0])
	if err != nil {
		t.Fatal(err)
	}
	defer top.Close()
	if err := MakeWhiteout(top, "f000"); err != nil {
		t.Fatal(err)
	}
	if len(lowers[0]) <= maxPathArg {
		t.Fatalf("layer paths are too short (%d bytes) to test long paths", len(lowers[0]))
	}
	return lowers
}

func checkManyLayers(t *testing.T, merged string, n int) {
	t.Helper()
	ents, err := os.ReadDir(merged)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n { // n-1 files f001.. plus common
		t.Errorf("merged view has %d entries, want %d", len(ents), n)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "common")); err != nil || string(b) != fmt.Sprint(n-1) {
		t.Errorf("common = %q %v: the top layer must win", b, err)
	}
	if _, err := os.Lstat(filepath.Join(merged, "f000")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("f000 is not whited out: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(merged, "f001")); err != nil || string(b) != "1" {
		t.Errorf("f001 = %q %v", b, err)
	}
}

func TestMountManyLongLayers(t *testing.T) {
	needRoot(t)
	const n = 150
	base := t.TempDir()
	lowers := manyLayers(t, base, n)
	for _, mode := range []string{"fsconfig", "mount2"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			up, work, merged := filepath.Join(dir, "u"), filepath.Join(dir, "w"), filepath.Join(dir, "m")
			for _, d := range []string{up, work, merged} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			o := Options{Lower: lowers, Upper: up, Work: work}
			if mode == "fsconfig" {
				mountT(t, merged, o)
			} else {
				if err := mountLegacy(merged, o); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = Unmount(merged) })
			}
			checkManyLayers(t, merged, n)
			if err := os.WriteFile(filepath.Join(merged, "new"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(up, "new")); err != nil {
				t.Errorf("write did not land in the upper directory: %v", err)
			}
			if err := Unmount(merged); err != nil {
				t.Fatal(err)
			}
			if ok, err := IsMounted(merged); ok || err != nil {
				t.Errorf("still mounted after Unmount: %v %v", ok, err)
			}
		})
	}
}

func TestMountReadOnly(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	l := filepath.Join(dir, "l")
	m := filepath.Join(dir, "m")
	for _, d := range []string{l, m} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// One lower layer alone is refused by overlay; two make a read-only
	// mount.
	l2 := filepath.Join(dir, "l2")
	if err := os.Mkdir(l2, 0o755); err != nil {
		t.Fatal(err)
	}
	mountT(t, m, Options{Lower: []string{l, l2}})
	if err := os.WriteFile(filepath.Join(m, "x"), nil, 0o644); err == nil {
		t.Errorf("wrote to a mount without an upper directory")
	}
}

func TestMountErrors(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		o    Options
		want string
	}{
		{"no layers", Options{}, "no lower layers"},
		{"upper without work", Options{Lower: []string{dir}, Upper: dir}, "go together"},
		{"missing layer", Options{Lower: []string{filepath.Join(dir, "nope"), dir}}, "nope"},
		{"missing long layer", Options{Lower: []string{filepath.Join(dir, strings.Repeat("x", 250), "nope"), dir}}, "nope"},
	}
	for _, tc := range tests {
		err := Mount(dir, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	if ok, err := IsMounted(dir); ok || err != nil {
		t.Errorf("IsMounted(plain dir) = %v %v", ok, err)
	}
	if err := Unmount(dir); !errors.Is(err, ErrNotMounted) {
		t.Errorf("Unmount(plain dir) = %v, want ErrNotMounted", err)
	}
}

func TestCheck(t *testing.T) {
	needRoot(t)
	for _, x := range []Xattrs{Trusted, User} {
		dir := t.TempDir()
		if err := Check(dir, x); err != nil {
			t.Errorf("%v: %v", x, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%v: Check left %v behind", x, ents)
		}
	}
}

func TestCheckFailsWhereMountFails(t *testing.T) {
	needRoot(t)
	// A store inside an overlay mount (strata run in a container) cannot
	// hold overlay layers: overlayfs refuses to create whiteout devices.
	dir := t.TempDir()
	var parts []string
	for _, d := range []string{"l1", "l2", "u", "w", "m"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	mountT(t, parts[4], Options{Lower: parts[:2], Upper: parts[2], Work: parts[3]})
	for _, x := range []Xattrs{Trusted, User} {
		err := Check(parts[4], x)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "whiteout") {
			t.Errorf("%v: Check inside an overlay mount = %v, want ErrUnsupported naming the whiteout", x, err)
		}
	}
}

func TestReleaseAtLeast(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{"6.18.44-fc-v657", true},
		{"6.8.0", true},
		{"6.7.12-generic", false},
		{"5.15.0-91-generic", false},
		{"7.0", true},
		{"garbage", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := releaseAtLeast(tc.rel, 6, 8); got != tc.want {
			t.Errorf("releaseAtLeast(%q, 6, 8) = %v", tc.rel, got)
		}
	}
}

// TestMountOddPaths mounts layers whose paths hold the characters
// mount(2)'s option syntax splits on.
func TestMountOddPaths(t *testing.T) {
	needRoot(t)
	for _, mode := range []string{"fsconfig", "mount2"} {
		t.Run(mode, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), `odd:dir,with\chars`)
			var l []string
			for _, d := range []string{"l1", "l:2", "u", "w", "m"} {
				p := filepath.Join(dir, d)
				if err := os.MkdirAll(p, 0o755); err != nil {
					t.Fatal(err)
				}
				l = append(l, p)
			}
			if err := os.WriteFile(filepath.Join(l[1], "f"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			o := Options{Lower: l[:2], Upper: l[2], Work: l[3]}
			var err error
			if mode == "fsconfig" {
				err = Mount(l[4], o)
			} else {
				err = mountLegacy(l[4], o)
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = Unmount(l[4]) })
			if b, err := os.ReadFile(filepath.Join(l[4], "f")); err != nil || string(b) != "x" {
				t.Errorf("f = %q %v", b, err)
			}
		})
	}
}
