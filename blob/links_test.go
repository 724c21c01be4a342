package blob

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// treeState describes every name, mode and content under dir.
func treeState(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %v", p, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestStoreRefusesLinkedDirs replaces each directory of a confined store
// by a link to a directory outside it that holds what the store would
// touch there (a blob, a staging file, a seal): nothing the store does
// reads, writes or removes anything outside, and what fails names the link.
func TestStoreRefusesLinkedDirs(t *testing.T) {
	blobData := []byte("a blob")
	d := digest.FromBytes(blobData)
	for _, rel := range []string{"blobs", "blobs/sha256", "state", "state/staging", "state/seals", "state/seals/sha256"} {
		t.Run(rel, func(t *testing.T) {
			work := t.TempDir()
			root := filepath.Join(work, "root")
			s := New(filepath.Join(root, "blobs"), filepath.Join(root, "state", "staging"),
				WithRoot(root), WithSeals(filepath.Join(root, "state", "seals")))
			// A working store first, so that every directory exists.
			if _, err := s.PutBytes(blobData); err != nil {
				t.Fatal(err)
			}
			if err := s.Verify(context.Background(), d, -1); err != nil {
				t.Fatal(err)
			}
			// The outside directory: a copy of what the link replaces, plus
			// an old staging file gc would remove and a blob it would not
			// keep.
			outside := filepath.Join(work, "outside")
			if err := os.Rename(filepath.Join(root, rel), outside); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"ingest-old", d.Encoded(), "sha256/" + d.Encoded(), "sha256/" + digest.FromString("junk").Encoded()} {
				p := filepath.Join(outside, name)
				if _, err := os.Stat(filepath.Dir(p)); err == nil {
					if _, err := os.Lstat(p); err != nil {
						os.WriteFile(p, []byte("precious"), 0o644)
					}
				}
			}
			if err := os.Symlink(outside, filepath.Join(root, rel)); err != nil {
				t.Fatal(err)
			}
			link := filepath.Join(root, rel)
			before := treeState(t, outside)

			isLink := func(op string, err error, must bool) {
				t.Helper()
				if err == nil {
					if must {
						t.Fatalf("%s through %s succeeded", op, rel)
					}
					return
				}
				var le *LinkError
				if !errors.Is(err, ErrSymlink) || !errors.As(err, &le) || le.Path != link || !strings.Contains(err.Error(), link) {
					t.Fatalf("%s: %v; want a LinkError naming %s", op, err, link)
				}
			}
			onBlobs := strings.HasPrefix(rel, "blobs")
			onStaging := rel == "state" || rel == "state/staging"
			_, err := s.PutBytes([]byte("new blob"))
			isLink("PutBytes", err, onBlobs || onStaging)
			_, _, err = s.Put(context.Background(), strings.NewReader("other"), "", -1)
			isLink("Put", err, onBlobs || onStaging)
			_, err = s.Stat(d)
			isLink("Stat", err, onBlobs)
			r, err := s.Open(d, -1)
			if err == nil {
				r.Close()
			}
			isLink("Open", err, onBlobs)
			isLink("Walk", s.Walk(func(digest.Digest, int64, error) error { return nil }), onBlobs)
			_, err = s.CleanStaging()
			isLink("CleanStaging", err, onStaging)
			other := New(filepath.Join(work, "other", "blobs"), filepath.Join(work, "other", "staging"))
			_, err = other.CopyFrom(context.Background(), s, d, -1)
			isLink("CopyFrom (source)", err, onBlobs)
			other.PutBytes([]byte("third"))
			_, err = s.CopyFrom(context.Background(), other, digest.FromBytes([]byte("third")), -1)
			isLink("CopyFrom (destination)", err, onBlobs || onStaging)
			s.Verify(context.Background(), d, -1) // reseals: must not write through a linked seal directory
			isLink("Delete", s.Delete(digest.FromString("junk")), onBlobs)
			isLink("Delete", s.Delete(d), onBlobs)

			if after := treeState(t, outside); after != before {
				t.Fatalf("the store changed %s through the link %s:\nbefore:\n%s\nafter:\n%s", outside, rel, before, after)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
				t.Fatalf("the link %s itself was replaced: %v", link, err)
			}
		})
	}
}

// TestStoreRefusesLinkedBlob: a blob file that is a link is never read,
// and deleting it removes the link, not its target.
func TestStoreRefusesLinkedBlob(t *testing.T) {
	work := t.TempDir()
	root := filepath.Join(work, "root")
	s := New(filepath.Join(root, "blobs"), filepath.Join(root, "staging"), WithRoot(root))
	target := filepath.Join(work, "secret")
	os.WriteFile(target, []byte("secret"), 0o644)
	d := digest.FromString("secret")
	p, _ := s.Path(d)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(d, -1); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Open of a linked blob: %v", err)
	}
	if _, err := s.Stat(d); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Stat of a linked blob: %v", err)
	}
	if err := s.Verify(context.Background(), d, -1); !errors.Is(err, ErrSymlink) {
		t.Fatalf("Verify of a linked blob: %v", err)
	}
	var walked error
	s.Walk(func(wd digest.Digest, _ int64, err error) error {
		if wd == d {
			walked = err
		}
		return nil
	})
	if !errors.Is(walked, ErrSymlink) {
		t.Fatalf("Walk reported the linked blob as %v", walked)
	}
	// A write of the same digest replaces the link with the real blob.
	if _, err := s.PutBytes([]byte("secret")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the link was not replaced by the blob: %v", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "secret" {
		t.Fatal("the link's target changed")
	}
	// Delete of a link removes the link only.
	os.Remove(p)
	os.Symlink(target, p)
	if err := s.Delete(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the link is still there")
	}
	if _, err := os.Stat(target); err != nil {
		t.Fatalf("Delete removed the link's target: %v", err)
	}
}
