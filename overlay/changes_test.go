package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

type change struct {
	path string
	kind ChangeKind
	info string // extra detail: type and xattrs
}

func collect(t *testing.T, upper string, x Xattrs) []change {
	t.Helper()
	var got []change
	err := Changes(upper, x, func(c Change) error {
		info := c.Info.Mode().Type().String()
		for k, v := range c.Xattrs {
			info += fmt.Sprintf(" %s=%s", k, v)
		}
		got = append(got, change{c.Path, c.Kind, info})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestChangesThroughMount makes changes through a real overlay mount and
// checks what the walker finds in the upper directory, for both xattr
// forms.
func TestChangesThroughMount(t *testing.T) {
	needRoot(t)
	for _, x := range []Xattrs{Trusted, User} {
		t.Run(x.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := func(s string) string { return filepath.Join(dir, s) }
			for _, d := range []string{"l/a", "l/b/sub", "l/d", "l/empty", "u", "w", "m"} {
				if err := os.MkdirAll(p(d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"l/a/f1", "l/a/f2", "l/b/x", "l/b/sub/y", "l/c", "l/d/z"} {
				if err := os.WriteFile(p(f), []byte(f), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			// Two lowers: overlay needs them for a second layer anyway.
			if err := os.Mkdir(p("l0"), 0o755); err != nil {
				t.Fatal(err)
			}
			mountT(t, p("m"), Options{Lower: []string{p("l"), p("l0")}, Upper: p("u"), Work: p("w"), Xattrs: x})
			m := func(s string) string { return filepath.Join(dir, "m", s) }
			steps := []struct {
				what string
				do   func() error
			}{
				{"add n", func() error { return os.WriteFile(m("n"), []byte("new"), 0o644) }},
				{"xattr on n", func() error { return unix.Setxattr(m("n"), "user.test", []byte("v"), 0) }},
				{"modify a/f1", func() error { return os.WriteFile(m("a/f1"), []byte("changed"), 0o644) }},
				{"delete a/f2", func() error { return os.Remove(m("a/f2")) }},
				{"delete c", func() error { return os.Remove(m("c")) }},
				{"replace b", func() error {
					if err := os.RemoveAll(m("b")); err != nil {
						return err
					}
					if err := os.Mkdir(m("b"), 0o750); err != nil {
						return err
					}
					return os.WriteFile(m("b/new"), nil, 0o644)
				}},
				{"chmod d", func() error { return os.Chmod(m("d"), 0o700) }},
				{"mkdir e/f/g", func() error { return os.MkdirAll(m("e/f/g"), 0o755) }},
				{"symlink l2", func() error { return os.Symlink("n", m("l2")) }},
				{"delete empty", func() error { return os.Remove(m("empty")) }},
			}
			for _, s := range steps {
				if err := s.do(); err != nil {
					t.Fatalf("%s: %v", s.what, err)
				}
			}
			if err := Unmount(p("m")); err != nil {
				t.Fatal(err)
			}
			want := []change{
				{"a", Modified, "d---------"},
				{"a/f1", Modified, "----------"},
				{"a/f2", Deleted, "Dc---------"},
				{"b", OpaqueDir, "d---------"},
				{"b/new", Modified, "----------"},
				{"c", Deleted, "Dc---------"},
				{"d", Modified, "d---------"},
				{"e", Modified, "d---------"},
				{"e/f", Modified, "d---------"},
				{"e/f/g", Modified, "d---------"},
				{"empty", Deleted, "Dc---------"},
				{"l2", Modified, "L---------"},
				{"n", Modified, "---------- user.test=v"},
			}
			got := collect(t, p("u"), x)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("changes:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestChangesTable builds upper directories by hand.
func TestChangesTable(t *testing.T) {
	needRoot(t)
	type file struct {
		path   string
		kind   string // dir, file, whiteout, symlink
		xattrs map[string]string
	}
	tests := []struct {
		name  string
		x     Xattrs
		files []file
		want  []change
		err   error
	}{
		{
			name:  "empty",
			x:     Trusted,
			files: nil,
			want:  nil,
		},
		{
			name: "sorted depth first",
			x:    Trusted,
			files: []file{
				{path: "b", kind: "file"},
				{path: "a.txt", kind: "file"},
				{path: "a", kind: "dir"},
				{path: "a/z", kind: "whiteout"},
				{path: "a/b", kind: "file"},
			},
			want: []change{{"a", Modified, "d---------"}, {"a/b", Modified, "----------"}, {"a/z", Deleted, "Dc---------"}, {"a.txt", Modified, "----------"}, {"b", Modified, "----------"}},
		},
		{
			name: "user form ignores trusted opaque",
			x:    User,
			files: []file{
				{path: "o", kind: "dir", xattrs: map[string]string{"user.overlay.opaque": "y"}},
				{path: "t", kind: "dir", xattrs: map[string]string{"trusted.overlay.opaque": "y"}},
				{path: "x", kind: "dir", xattrs: map[string]string{"user.overlay.opaque": "x"}},
			},
			want: []change{{"o", OpaqueDir, "d---------"}, {"t", Modified, "d--------- trusted.overlay.opaque=y"}, {"x", Modified, "d---------"}},
		},
		{
			name: "escaped xattrs come back",
			x:    Trusted,
			files: []file{
				{path: "f", kind: "file", xattrs: map[string]string{"trusted.overlay.overlay.opaque": "y", "trusted.overlay.origin": "o"}},
			},
			want: []change{{"f", Modified, "---------- trusted.overlay.opaque=y"}},
		},
		{
			name:  "redirect refused",
			x:     Trusted,
			files: []file{{path: "d", kind: "dir", xattrs: map[string]string{"trusted.overlay.redirect": "/x"}}},
			err:   ErrRedirect,
		},
		{
			name:  "metacopy refused",
			x:     User,
			files: []file{{path: "f", kind: "file", xattrs: map[string]string{"user.overlay.metacopy": ""}}},
			err:   ErrRedirect,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := t.TempDir()
			for _, f := range tc.files {
				p := filepath.Join(up, f.path)
				var err error
				switch f.kind {
				case "dir":
					err = os.Mkdir(p, 0o755)
				case "file":
					err = os.WriteFile(p, nil, 0o644)
				case "whiteout":
					err = unix.Mknod(p, unix.S_IFCHR, 0)
				}
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range f.xattrs {
					if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			var got []change
			err := Changes(up, tc.x, func(c Change) error {
				info := c.Info.Mode().Type().String()
				for k, v := range c.Xattrs {
					info += fmt.Sprintf(" %s=%s", k, v)
				}
				got = append(got, change{c.Path, c.Kind, info})
				return nil
			})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("changes:\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestChangesStopsOnError(t *testing.T) {
	up := t.TempDir()
	for _, f := range []string{"a", "b", "c"} {
		if err := os.WriteFile(filepath.Join(up, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := Changes(up, Trusted, func(c Change) error {
		n++
		if c.Path == "b" {
			return stop
		}
		return nil
	})
	if err != stop || n != 2 {
		t.Errorf("err = %v after %d calls, want stop after 2", err, n)
	}
	if err := Changes(filepath.Join(up, "a"), Trusted, nil); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Changes on a file: %v", err)
	}
}
