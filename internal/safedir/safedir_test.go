package safedir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestNoLinkFollowed(t *testing.T) {
	work := t.TempDir()
	root := filepath.Join(work, "root")
	outside := filepath.Join(work, "outside")
	os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "f"), []byte("outside"), 0o644)
	os.WriteFile(filepath.Join(root, "a", "f"), []byte("inside"), 0o644)
	os.Symlink(outside, filepath.Join(root, "link"))
	os.Symlink(outside, filepath.Join(root, "a", "link"))
	os.Symlink(filepath.Join(outside, "f"), filepath.Join(root, "a", "flink"))
	// The root itself may be a link: it is the caller's choice.
	os.Symlink(root, filepath.Join(work, "rootlink"))

	for _, tc := range []struct {
		rel      string
		wantLink string // "" when the open must succeed
	}{
		{".", ""}, {"", ""}, {"a", ""}, {"a/b", ""},
		{"link", "link"}, {"link/x", "link"}, {"a/link", "a/link"}, {"a/link/y", "a/link"},
	} {
		for _, r := range []string{root, filepath.Join(work, "rootlink")} {
			d, err := Open(r, tc.rel)
			if tc.wantLink == "" {
				if err != nil {
					t.Fatalf("Open(%s, %q): %v", r, tc.rel, err)
				}
				d.Close()
				continue
			}
			var le *LinkError
			if !errors.Is(err, ErrSymlink) || !errors.As(err, &le) || le.Path != filepath.Join(r, tc.wantLink) {
				t.Fatalf("Open(%s, %q): %v; want a LinkError for %s", r, tc.rel, err, tc.wantLink)
			}
			if _, err := MkdirAll(r, tc.rel, 0o755); !errors.Is(err, ErrSymlink) {
				t.Fatalf("MkdirAll(%s, %q): %v", r, tc.rel, err)
			}
		}
	}
	for _, bad := range []string{"..", "../outside", "/etc", "a/../../outside"} {
		if _, err := Open(root, bad); err == nil {
			t.Fatalf("Open(%q) succeeded", bad)
		}
	}
	if _, err := OpenFile(root, "a/flink", os.O_RDONLY, 0); !errors.Is(err, ErrSymlink) {
		t.Fatalf("OpenFile of a link: %v", err)
	}
	if _, err := OpenFile(root, "link/new", os.O_RDWR|os.O_CREATE, 0o644); !errors.Is(err, ErrSymlink) {
		t.Fatalf("OpenFile through a link: %v", err)
	}
	if _, err := ReadFile(root, "a/flink", 100, errors.New("big")); !errors.Is(err, ErrSymlink) {
		t.Fatalf("ReadFile of a link: %v", err)
	}
	big := errors.New("big")
	if b, err := ReadFile(root, "a/f", 6, big); err != nil || string(b) != "inside" {
		t.Fatalf("ReadFile at the limit: %q %v", b, err)
	}
	if _, err := ReadFile(root, "a/f", 5, big); !errors.Is(err, big) {
		t.Fatalf("ReadFile over the limit: %v", err)
	}
	// MkdirAll makes what is missing, root included.
	d, err := MkdirAll(filepath.Join(work, "new"), "x/y", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if fi, err := os.Stat(filepath.Join(work, "new", "x", "y")); err != nil || !fi.IsDir() {
		t.Fatalf("MkdirAll made nothing: %v", err)
	}
	if _, err := Open(root, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open of a missing directory: %v", err)
	}
	if err := CheckNoLinks(root, "a", "a/b", "missing", "a/link"); !errors.Is(err, ErrSymlink) {
		t.Fatalf("CheckNoLinks: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "f")); string(b) != "outside" {
		t.Fatal("the outside file changed")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 1 {
		t.Fatalf("something was made outside: %v", ents)
	}
}
