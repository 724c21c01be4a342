package contextdir

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func write(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIgnoreFiles(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		cf      string
		want    []string
		ignored string
	}{
		{"dockerignore", map[string]string{".dockerignore": "*.md\nsub/tmp\n!sub/tmp/keep\n**/*.bak\n", "a.md": "", "b": "", "sub/tmp/x": "", "sub/tmp/keep": "", "sub/c.bak": "", "sub/d": ""},
			"", []string{".dockerignore", "b", "sub", "sub/d", "sub/tmp/keep"}, ".dockerignore"},
		{"containerignore wins", map[string]string{".containerignore": "b\n", ".dockerignore": "a\n", "a": "", "b": ""},
			"", []string{".containerignore", ".dockerignore", "a"}, ".containerignore"},
		{"the Containerfile's own", map[string]string{"Containerfile.dockerignore": "a\n", ".dockerignore": "b\n", "a": "", "b": "", "Containerfile": ""},
			"Containerfile", []string{".dockerignore", "Containerfile", "Containerfile.dockerignore", "b"}, "Containerfile.dockerignore"},
		{"none", map[string]string{"a": ""}, "", []string{"a"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, c.files)
			cf := ""
			if c.cf != "" {
				cf = filepath.Join(root, c.cf)
			}
			d, err := Open(root, cf)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if filepath.Base(d.Ignore) != c.ignored && !(c.ignored == "" && d.Ignore == "") {
				t.Errorf("ignore file %q, want %q", d.Ignore, c.ignored)
			}
			var got []string
			err = d.Walk("", func(e Entry) error {
				if e.Rel != "" && !e.IsDir() || e.Rel == "sub" {
					got = append(got, e.Rel)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("walk: %q, want %q", got, c.want)
			}
		})
	}
}

func TestGlobAndResolve(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{"a.txt": "a", "b.txt": "b", "sub/c.txt": "c", "sub/d.md": "d"})
	if err := os.Symlink("sub/c.txt", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/../../etc", filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for pat, want := range map[string][]string{"*.txt": {"a.txt", "b.txt"}, "sub/*": {"sub/c.txt", "sub/d.md"}, "s?b/*.md": {"sub/d.md"}, "none*": nil} {
		got, err := d.Glob(pat)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Glob(%q) = %q, %v; want %q", pat, got, err, want)
		}
	}
	if r, err := Resolve(d.Tree(), "link"); err != nil || r != "sub/c.txt" {
		t.Errorf("Resolve(link) = %q, %v", r, err)
	}
	// A link that climbs out stays inside, as in a container.
	if r, err := Resolve(d.Tree(), "escape"); err == nil && r != "" && r != "etc" {
		t.Errorf("Resolve(escape) = %q", r)
	}
	for in, want := range map[string]string{"a/../b": "b", "/x/y": "x/y", ".": "", "./a/": "a"} {
		if got, err := Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := Clean("../x"); err == nil {
		t.Errorf("Clean(../x) is allowed")
	}
}

func TestHasherIgnoresMtime(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{"a": "content"})
	d, err := Open(root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	sum := func() string {
		h := NewHasher()
		if err := d.Walk("", func(e Entry) error { return h.Add(d.Tree(), e.Rel, e.Rel, &e.St) }); err != nil {
			t.Fatal(err)
		}
		return h.Digest().String()
	}
	a := sum()
	if err := os.Chtimes(filepath.Join(root, "a"), timeZero, timeZero); err != nil {
		t.Fatal(err)
	}
	if b := sum(); a != b {
		t.Errorf("an mtime changed the digest")
	}
	if err := os.Chmod(filepath.Join(root, "a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c := sum(); c == a {
		t.Errorf("a mode change kept the digest")
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"a", "../a", "/a/../../b", "a/./b/", "", ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Clean(s)
		if err != nil {
			return
		}
		if filepath.IsAbs(r) || r == ".." || len(r) >= 3 && r[:3] == "../" {
			t.Errorf("Clean(%q) = %q climbs out", s, r)
		}
	})
}

var timeZero = mustTime()

func mustTime() (t0 time.Time) { return time.Unix(1, 0) }

// FuzzIgnore reads any .dockerignore: Open either refuses it or gives a
// context whose walk and globs work and name only what is in it.
func FuzzIgnore(f *testing.F) {
	for _, s := range []string{"*.md\n!keep.md\n", "**\n!a\n", "#c\n\n/b/../c\n", "[\n", "!\n", "a\\\n"} {
		f.Add(s)
	}
	root := f.TempDir()
	write(f, root, map[string]string{"a": "", "keep.md": "", "b/c": "", "b/d.md": ""})
	f.Fuzz(func(t *testing.T, ignore string) {
		if err := os.WriteFile(filepath.Join(root, ".dockerignore"), []byte(ignore), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err := Open(root, "")
		if err != nil {
			return
		}
		defer d.Close()
		err = d.Walk("", func(e Entry) error {
			if filepath.IsAbs(e.Rel) || e.Rel == ".." || strings.HasPrefix(e.Rel, "../") {
				t.Fatalf("walk gave %q", e.Rel)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk with .dockerignore %q: %v", ignore, err)
		}
		if _, err := d.Glob("*"); err != nil {
			t.Fatalf("glob with .dockerignore %q: %v", ignore, err)
		}
	})
}
