package layout

import (
	"bytes"
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
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
)

// outsideTree describes every name, mode and content under dir.
func outsideTree(t *testing.T, dir string) string {
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
		line := fmt.Sprintf("%s %v %d", p, fi.Mode(), fi.ModTime().UnixNano())
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

// linkedLayout makes a layout with one named image, an unreachable blob,
// an old staging file and a seal, then moves rel out of it to a directory
// beside it and puts a symbolic link in its place. It returns the layout's
// directory, the link and the outside directory.
func linkedLayout(t *testing.T, rel string) (dir, link, outside string) {
	t.Helper()
	work := t.TempDir()
	dir = filepath.Join(work, "layout")
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	md := addImage(t, l, "linux/amd64", "layer one")
	if err := l.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PutBytes(ocispec.MediaTypeImageLayer, []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	os.WriteFile(filepath.Join(dir, StateDir, "staging", "ingest-old"), []byte("dead writer"), 0o644)
	for _, p := range []string{filepath.Join(dir, StateDir, "partial", "sha256"), filepath.Join(dir, StateDir, "seals", "sha256")} {
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, digest.FromString("old").Encoded()), []byte("old"), 0o644)
	}
	outside = filepath.Join(work, "outside")
	link = filepath.Join(dir, rel)
	if err := os.Rename(link, outside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	return dir, link, outside
}

// linkedNames are the layout's own names a test replaces by links.
var linkedNames = []string{
	BlobsDir, filepath.Join(BlobsDir, "sha256"), StateDir,
	filepath.Join(StateDir, "staging"), filepath.Join(StateDir, "seals"), filepath.Join(StateDir, "seals", "sha256"),
	filepath.Join(StateDir, "partial"), filepath.Join(StateDir, "partial", "sha256"),
	IndexFile, LayoutFile,
}

func wantLinkError(t *testing.T, what string, err error, link string) {
	t.Helper()
	var le *blob.LinkError
	if !errors.Is(err, ErrSymlink) || !errors.As(err, &le) || le.Path != link || !strings.Contains(err.Error(), link) {
		t.Fatalf("%s: %v; want an error wrapping ErrSymlink that names %s", what, err, link)
	}
}

// TestOpenRefusesLinkedState: a layout whose own files or directories
// are links to elsewhere is refused by Open and Init, naming the link,
// and nothing is read, written or removed outside it.
func TestOpenRefusesLinkedState(t *testing.T) {
	for _, rel := range linkedNames {
		t.Run(rel, func(t *testing.T) {
			dir, link, outside := linkedLayout(t, rel)
			before := outsideTree(t, filepath.Dir(outside))
			if _, err := Open(dir); err == nil {
				t.Fatal("Open succeeded")
			} else {
				wantLinkError(t, "Open", err, link)
			}
			if _, err := Init(dir); err == nil {
				t.Fatal("Init succeeded")
			} else {
				wantLinkError(t, "Init", err, link)
			}
			if after := outsideTree(t, filepath.Dir(outside)); after != before {
				t.Fatalf("changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

// TestLinkedStateAfterOpen replaces a state directory by a link after the
// layout was opened (Open's check cannot see it): gc, writes, copies and
// fsck still never touch the link's target.
func TestLinkedStateAfterOpen(t *testing.T) {
	for _, rel := range linkedNames[:8] {
		t.Run(rel, func(t *testing.T) {
			work := t.TempDir()
			dir := filepath.Join(work, "layout")
			l, err := Init(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			md := addImage(t, l, "linux/amd64", "layer one")
			if err := l.Tag(md, "v1"); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(dir, StateDir, "partial", "sha256"), 0o755)
			// Outside: a copy of the layout, so that every name gc or a
			// write would touch exists there, plus garbage gc would remove.
			outside := filepath.Join(work, "outside")
			if err := os.CopyFS(outside, os.DirFS(filepath.Join(dir, rel))); err != nil {
				t.Fatal(err)
			}
			junk := digest.FromString("junk")
			for _, p := range []string{"ingest-old", junk.Encoded(), filepath.Join("sha256", junk.Encoded())} {
				if fi, err := os.Stat(filepath.Dir(filepath.Join(outside, p))); err == nil && fi.IsDir() {
					os.WriteFile(filepath.Join(outside, p), []byte("precious"), 0o644)
				}
			}
			link := filepath.Join(dir, rel)
			if err := os.Rename(link, filepath.Join(work, "moved")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, link); err != nil {
				t.Fatal(err)
			}
			before := outsideTree(t, outside)

			onBlobs := strings.HasPrefix(rel, BlobsDir)
			if _, err := l.GC(context.Background()); err == nil && (onBlobs || rel == StateDir) {
				t.Fatal("gc succeeded")
			} else if err != nil {
				wantLinkError(t, "gc", err, link)
			}
			_, err = l.Import(context.Background(), bytes.NewReader(testTar(t, 100)), ImportOptions{})
			if err != nil {
				wantLinkError(t, "import", err, link)
			} else if rel != filepath.Join(StateDir, "seals") && rel != filepath.Join(StateDir, "seals", "sha256") && !strings.Contains(rel, "partial") {
				t.Fatal("import succeeded")
			}
			src := initTest(t)
			smd := addImage(t, src, "linux/amd64", "another layer")
			if _, err := CopyImage(context.Background(), l, src, smd, CopyOptions{}); err != nil {
				wantLinkError(t, "copy", err, link)
			} else if onBlobs || rel == StateDir || strings.HasSuffix(rel, "staging") {
				t.Fatal("copy succeeded")
			}
			probs, err := l.Fsck(context.Background())
			if err == nil && onBlobs && len(probs) == 0 {
				t.Fatal("fsck found nothing wrong")
			}
			if after := outsideTree(t, outside); after != before {
				t.Fatalf("changed through the link %s:\nbefore:\n%s\nafter:\n%s", rel, before, after)
			}
		})
	}
}
