package blob

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func newSealedStore(t *testing.T, dir string) *Store {
	t.Helper()
	return New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"), WithSeals(filepath.Join(dir, "seals")))
}

func putSealed(t *testing.T, s *Store, content string) (digest.Digest, string) {
	t.Helper()
	d, err := s.PutBytes([]byte(content))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(d)
	return d, p
}

// Each change a file can undergo, and whether its seal still holds after it.
func TestSealTracksFileChanges(t *testing.T) {
	const content = "sealed content, 32 bytes long..."
	tests := []struct {
		name   string
		change func(t *testing.T, p string)
		holds  bool
	}{
		{"untouched", func(t *testing.T, p string) {}, true},
		{"second name (a copy's hardlink)", func(t *testing.T, p string) {
			if err := os.Link(p, p+".link"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"chmod", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"rewritten, same size", func(t *testing.T, p string) {
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, []byte("SEALED CONTENT, 32 BYTES LONG..."), 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"rewritten, mtime put back", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Chmod(p, 0o644)
			if err := os.WriteFile(p, []byte("SEALED CONTENT, 32 BYTES LONG..."), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, time.Time{}, fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated", func(t *testing.T, p string) {
			os.Chmod(p, 0o644)
			if err := os.Truncate(p, 3); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"replaced by another file", func(t *testing.T, p string) {
			tmp := p + ".new"
			if err := os.WriteFile(tmp, []byte(content), 0o444); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSealedStore(t, t.TempDir())
			d, p := putSealed(t, s, content)
			if _, ok := s.sealed(d, int64(len(content))); !ok {
				t.Fatal("a blob just written has no valid seal")
			}
			tt.change(t, p)
			if _, ok := s.sealed(d, -1); ok != tt.holds {
				t.Fatalf("seal holds = %v, want %v", ok, tt.holds)
			}
		})
	}
}

func TestSealMalformedOrMissing(t *testing.T) {
	s := newSealedStore(t, t.TempDir())
	d, _ := putSealed(t, s, "x")
	for _, bad := range []string{"", "garbage", "strata-seal-1 1 2 3", "strata-seal-0 1 2 3 4 5 6\n"} {
		if err := os.WriteFile(s.sealPath(d), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok := s.sealed(d, -1); ok {
			t.Fatalf("seal %q was trusted", bad)
		}
	}
	// Verify hashes whatever the seal says, and seals what it verified.
	if err := s.Verify(context.Background(), d, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.sealed(d, 1); !ok {
		t.Fatal("Verify did not seal a good blob")
	}
	if _, ok := s.sealed(d, 2); ok {
		t.Fatal("a seal was trusted for the wrong size")
	}
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.sealPath(d)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Delete left the seal: %v", err)
	}
	// A store without seals neither writes nor trusts them.
	dir := t.TempDir()
	plain := New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
	d2, _ := putSealed(t, plain, "y")
	if _, ok := plain.sealed(d2, 1); ok {
		t.Fatal("a store without seals trusted one")
	}
	if _, err := os.Stat(filepath.Join(dir, "seals")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a store without seals wrote one")
	}
}

func TestCopyFromSeals(t *testing.T) {
	dir := t.TempDir()
	src := newSealedStore(t, filepath.Join(dir, "a"))
	dst := newSealedStore(t, filepath.Join(dir, "b"))
	const content = "content that gets linked"
	d, p := putSealed(t, src, content)
	m, err := dst.CopyFrom(context.Background(), src, d, int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	if m != CopyHardlink && m != CopyReflink {
		t.Fatalf("a copy within one file system was a %s, not a link or clone", m)
	}
	if _, ok := dst.sealed(d, -1); !ok {
		t.Fatal("the copy is not sealed")
	}
	if _, ok := src.sealed(d, -1); !ok {
		t.Fatal("the source's seal went stale with the copy")
	}

	// Written in place (mtime moves): the copy hashes it and refuses it.
	dst2 := newSealedStore(t, filepath.Join(dir, "c"))
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, []byte("CONTENT THAT GETS LINKED"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dst2.CopyFrom(context.Background(), src, d, int64(len(content))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("copy of a rewritten blob: %v, want ErrDigestMismatch", err)
	}
	if dst2.Has(d, -1) {
		t.Fatal("a rewritten blob reached the destination")
	}
	if _, ok := src.sealed(d, -1); ok {
		t.Fatal("a blob that failed verification kept its seal")
	}
}

// FuzzParseSeal: any bytes in a seal file parse or fail cleanly, and what
// parses encodes back to an identity that parses the same.
func FuzzParseSeal(f *testing.F) {
	f.Add(identity{dev: 2049, ino: 12, nlink: 2, size: 1 << 20, mtime: 1, ctime: 2}.encode())
	f.Add("strata-seal-1 -1 0 0 0 0 0\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseIdentity(s)
		if err != nil {
			return
		}
		again, err := parseIdentity(id.encode())
		if err != nil || again != id {
			t.Fatalf("%q: round trip gave %+v, %v", s, again, err)
		}
	})
}
