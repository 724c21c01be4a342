package vfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/strata-oci/strata/internal/testenv"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// diffBase extracts a base layer into a snapshot-like directory and copies
// it to a rootfs, as unpack does, and returns both with the file list and
// the time the copy was complete.
func diffBase(t testing.TB, entries ...layertest.Entry) (snap, rootfs string, files layer.Files, done time.Time) {
	t.Helper()
	dir := t.TempDir()
	snap, rootfs = filepath.Join(dir, "snap"), filepath.Join(dir, "rootfs")
	must(t, os.Mkdir(snap, 0o755))
	files = layer.Files{}
	must(t, layer.Apply(context.Background(), snap, bytes.NewReader(layertest.Tar(entries...)), layer.ApplyOptions{}, files))
	must(t, copyTree(context.Background(), snap, rootfs, copyOptions{}))
	return snap, rootfs, files, time.Now()
}

// checkDiff applies the diff's layer onto a copy of snap and checks that
// it gives rootfs exactly.
func checkDiff(t testing.TB, d *layer.Diff, snap, rootfs string, files layer.Files) {
	t.Helper()
	var buf bytes.Buffer
	must(t, d.WriteTar(&buf, layer.WriteOptions{}))
	next := filepath.Join(t.TempDir(), "next")
	must(t, copyTree(context.Background(), snap, next, copyOptions{}))
	if err := layer.Apply(context.Background(), next, &buf, layer.ApplyOptions{}, files.Clone()); err != nil {
		t.Fatalf("apply the diff %v: %v", d.Paths(), err)
	}
	diffTrees(t, "rootfs", describeTree(t, rootfs), "parent+diff", describeTree(t, next))
}

func TestDiffVFS(t *testing.T) {
	needRoot(t)
	base := []layertest.Entry{
		layertest.Dir("d", 0o755),
		layertest.File("d/a", "a", 0o644),
		layertest.File("d/b", "b", 0o644),
		layertest.Hardlink("d/c", "d/b"),
		layertest.Dir("e", 0o755),
		layertest.File("e/x", "x", 0o644),
		layertest.Symlink("s", "d/a"),
		layertest.File("top", "top", 0o600),
	}
	for _, tc := range []struct {
		name   string
		change func(r string) error
		want   []string
	}{
		{"nothing", func(string) error { return nil }, []string{}},
		{"new link to an unchanged file", func(r string) error {
			return os.Link(filepath.Join(r, "d/a"), filepath.Join(r, "d/a2"))
		}, []string{"d/", "d/a2 -> d/a"}},
		{"linked file changed", func(r string) error {
			return os.WriteFile(filepath.Join(r, "d/c"), []byte("changed"), 0o644)
		}, []string{"d/", "d/b", "d/c -> d/b"}},
		{"one name of a link removed", func(r string) error {
			return os.Remove(filepath.Join(r, "d/c"))
		}, []string{"d/", "d/.wh.c"}},
		{"new linked pair", func(r string) error {
			if err := os.WriteFile(filepath.Join(r, "n1"), []byte("n"), 0o644); err != nil {
				return err
			}
			return os.Link(filepath.Join(r, "n1"), filepath.Join(r, "n2"))
		}, []string{"n1", "n2 -> n1"}},
		{"chmod only", func(r string) error { return os.Chmod(filepath.Join(r, "top"), 0o640) }, []string{"top"}},
		{"chown only", func(r string) error { return os.Lchown(filepath.Join(r, "top"), 3, 4) }, []string{"top"}},
		{"xattr only", func(r string) error {
			return unix.Lsetxattr(filepath.Join(r, "e/x"), "user.k", []byte("v"), 0)
		}, []string{"e/", "e/x"}},
		{"directory removed", func(r string) error { return os.RemoveAll(filepath.Join(r, "e")) }, []string{".wh.e"}},
		{"socket left out", func(r string) error {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return unix.Bind(fd, &unix.SockaddrUnix{Name: filepath.Join(r, "e/sock")})
		}, []string{"e/"}},
		{"directory replaced by a file", func(r string) error {
			if err := os.RemoveAll(filepath.Join(r, "e")); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(r, "e"), []byte("file"), 0o644)
		}, []string{"e"}},
		{"directory emptied and refilled", func(r string) error {
			if err := os.RemoveAll(filepath.Join(r, "e")); err != nil {
				return err
			}
			if err := os.Mkdir(filepath.Join(r, "e"), 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(r, "e/y"), []byte("y"), 0o644)
		}, []string{"e/", "e/.wh.x", "e/y"}},
		{"symlink retargeted", func(r string) error {
			if err := os.Remove(filepath.Join(r, "s")); err != nil {
				return err
			}
			return os.Symlink("top", filepath.Join(r, "s"))
		}, []string{"s"}},
		{"mtime only", func(r string) error {
			ts := unix.NsecToTimespec(12345)
			return unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(r, "d/a"), []unix.Timespec{ts, ts}, 0)
		}, []string{"d/", "d/a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap, rootfs, files, done := diffBase(t, base...)
			must(t, tc.change(rootfs))
			d, err := diffVFS(context.Background(), rootfs, snap, files, done.Add(-ctimeSlack), layer.Ownership{})
			must(t, err)
			got := d.Paths()
			// Directories whose mtime the change moved come along; the
			// cases list what must be there.
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("diff: got %q, want %q", got, tc.want)
			}
			checkDiff(t, d, snap, rootfs, files)
		})
	}
}

// TestDiffVFSUntouchedSkipped shows that files whose ctime is older than
// the cutoff are trusted without comparison: the cost of a vfs diff is a
// stat per file, and reads only where something changed.
func TestDiffVFSUntouchedSkipped(t *testing.T) {
	needRoot(t)
	snap, rootfs, files, _ := diffBase(t, layertest.File("a", "a", 0o644))
	// The list lies about a's mode; a cutoff in the future trusts the
	// rootfs, a cutoff before the copy compares and sees it.
	e := *files["a"]
	e.Mode = 0o600
	files["a"] = &e
	d, err := diffVFS(context.Background(), rootfs, snap, files, time.Now().Add(time.Hour), layer.Ownership{})
	must(t, err)
	if !d.Empty() {
		t.Fatalf("untouched file compared: %v", d.Paths())
	}
	d, err = diffVFS(context.Background(), rootfs, snap, files, time.Time{}, layer.Ownership{})
	must(t, err)
	if got := d.Paths(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("diff with no cutoff: %v", got)
	}
}

// FuzzDiffVFS runs a random sequence of changes on a small tree and
// checks that the diff, applied on the parent, gives the changed tree.
func FuzzDiffVFS(f *testing.F) {
	testenv.RequireRoot(f)
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{3, 17, 9, 200, 41, 5, 6, 99, 12, 1, 0, 250})
	f.Add([]byte{7, 7, 7, 1, 2, 3, 8, 8, 8, 4, 6, 2})
	// mv a/h a/f: a/f's name holds a/g's inode, with a/f's metadata.
	f.Add([]byte("!10"))
	// ... then mv b/c/f a/g: a/f alone holds a/g's old content with its
	// own old metadata; only its ctime tells.
	f.Add([]byte("!1!b"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 40 {
			ops = ops[:40]
		}
		snap, rootfs, files, done := diffBase(t,
			layertest.Dir("a", 0o755), layertest.File("a/f", "f", 0o644),
			layertest.File("a/g", "g", 0o644), layertest.Hardlink("a/h", "a/g"),
			layertest.Dir("b", 0o755), layertest.Dir("b/c", 0o700), layertest.File("b/c/f", "deep", 0o600),
			layertest.Symlink("l", "a/f"), layertest.File("t", "t", 0o644))
		names := []string{"a", "a/f", "a/g", "a/h", "b", "b/c", "b/c/f", "l", "t", "n", "a/n", "b/n"}
		for i := 0; i+1 < len(ops); i += 2 {
			p := filepath.Join(rootfs, names[int(ops[i+1])%len(names)])
			q := filepath.Join(rootfs, names[int(ops[i+1]/16)%len(names)])
			// Errors are fine: the op may not apply to what is there.
			switch ops[i] % 9 {
			case 0:
				_ = os.WriteFile(p, []byte(fmt.Sprint("w", i)), 0o644)
			case 1:
				_ = os.RemoveAll(p)
			case 2:
				_ = os.Mkdir(p, 0o750)
			case 3:
				_ = os.Link(q, p)
			case 4:
				_ = os.Chmod(p, os.FileMode(0o600+uint32(i)%0o100))
			case 5:
				_ = os.Symlink(fmt.Sprint("target", i), p)
			case 6:
				_ = os.Rename(q, p)
			case 7:
				_ = os.Lchown(p, i, i+1)
			case 8:
				_ = unix.Lsetxattr(p, "user.fuzz", []byte{byte(i)}, 0)
			}
		}
		d, err := diffVFS(context.Background(), rootfs, snap, files, done.Add(-ctimeSlack), layer.Ownership{})
		if err != nil {
			t.Fatal(err)
		}
		checkDiff(t, d, snap, rootfs, files)
	})
}

// TestDiffConfined swaps a directory of the rootfs for a symlink out of it
// between the diff and the layer: the layer refuses rather than carrying
// the outside file.
func TestDiffConfined(t *testing.T) {
	needRoot(t)
	_, rootfs, files, done := diffBase(t, layertest.Dir("d", 0o755), layertest.File("d/a", "a", 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "d/secret"), []byte("inside"), 0o644))
	d, err := diffVFS(context.Background(), rootfs, "", files, done.Add(-ctimeSlack), layer.Ownership{})
	must(t, err)
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("OUTSID"), 0o644))
	must(t, os.Rename(filepath.Join(rootfs, "d"), filepath.Join(rootfs, "d.moved")))
	must(t, os.Symlink(outside, filepath.Join(rootfs, "d")))
	var buf bytes.Buffer
	err = d.WriteTar(&buf, layer.WriteOptions{})
	if err == nil {
		t.Fatal("layer written through a swapped-in symlink")
	}
	if bytes.Contains(buf.Bytes(), []byte("OUTSID")) {
		t.Fatal("the layer holds a file from outside the rootfs")
	}
}
