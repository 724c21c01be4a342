package layertest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
)

// NeedRoot skips the test (or fails it under make test's switch) unless
// it runs as root: the snapshot packages' tests give files owners, make
// devices and mount overlays.
func NeedRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
}

// Must fails the test on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Lstat stats p without following a final symlink, failing the test if
// it cannot.
func Lstat(t testing.TB, p string) *unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("lstat %s: %v", p, err)
	}
	return &st
}

// BuildStandard writes the Standard image, with /bin/sh as its command
// and alice as its user, into a new layout, tagged v1, and returns the
// layout's directory and the uncompressed layers.
func BuildStandard(t testing.TB) (string, [][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	layers := Standard(nil)
	if err := BuildImage(dir, "v1", Image{Layers: layers, Cmd: []string{"/bin/sh"}, User: "alice"}); err != nil {
		t.Fatal(err)
	}
	return dir, layers
}

// DescribeTree describes every file under root, one line per path: type,
// mode, owner, size, content hash, link count, link target, device,
// mtime (not the root's, which no layer sets) and xattrs (overlay's own
// left out).
func DescribeTree(t testing.TB, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			return nil // no layer carries sockets
		}
		var b strings.Builder
		fmt.Fprintf(&b, "type=%o mode=%o owner=%d:%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fmt.Fprintf(&b, " size=%d links=%d sha=%s", st.Size, st.Nlink, FileSum(t, p)[:12])
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " link=%s", l)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if rel != "." {
			fmt.Fprintf(&b, " mtime=%d", st.Mtim.Nano())
		}
		x, err := fsx.ReadXattrs(p)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
				continue
			}
			fmt.Fprintf(&b, " %s=%x", k, x[k])
		}
		out[rel] = b.String()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

// WithoutLinkCounts drops link counts from a description: overlay shows
// a file copied up from a lower layer apart from its lower hardlinks, so
// counts differ from any extraction while contents agree.
func WithoutLinkCounts(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if i := strings.Index(v, " links="); i >= 0 {
			j := strings.Index(v[i+1:], " ")
			v = v[:i] + v[i+1+j:]
		}
		out[k] = v
	}
	return out
}

// DiffTrees fails the test with the paths whose descriptions differ.
func DiffTrees(t testing.TB, nameA string, a map[string]string, nameB string, b map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	bad := 0
	for _, k := range sorted {
		if a[k] != b[k] {
			if bad++; bad <= 20 {
				t.Errorf("%s:\n  %s: %q\n  %s: %q", k, nameA, a[k], nameB, b[k])
			}
		}
	}
	if bad > 20 {
		t.Errorf("%d paths differ in all", bad)
	}
}

// FileSum is the hex sha256 of the file p.
func FileSum(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// SparseSource writes, in dir, "sparse" (size bytes, a few bytes of data
// at its start, middle and end, holes between) and "zeros" (zeroBytes of
// allocated zeros, which GNU tar stores in full).
func SparseSource(t testing.TB, dir string, size, zeroBytes int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off  int64
		data string
	}{{0, "head"}, {size/3 + 5, "middle"}, {size - 4, "tail"}} {
		if _, err := f.WriteAt([]byte(w.data), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "zeros"), make([]byte, zeroBytes), 0o644); err != nil {
		t.Fatal(err)
	}
}

// GNUTar archives the names in dir with GNU tar --sparse and args.
func GNUTar(t testing.TB, dir string, args []string, names ...string) []byte {
	t.Helper()
	testenv.RequireTool(t, "tar")
	cmd := exec.Command("tar", append(append([]string{"-C", dir, "--sparse", "--numeric-owner", "-cf", "-"}, args...), names...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar %v: %v: %s", args, err, stderr.String())
	}
	return out.Bytes()
}

// SparseFormats are the ways GNU tar stores a sparse file.
var SparseFormats = []struct {
	Name string
	Args []string
}{
	{"gnu", []string{"--format=gnu"}},
	{"pax-0.0", []string{"--format=pax", "--sparse-version=0.0"}},
	{"pax-0.1", []string{"--format=pax", "--sparse-version=0.1"}},
	{"pax-1.0", []string{"--format=pax", "--sparse-version=1.0"}},
}

// SparseSeeds are small layers in every sparse form, for fuzzers.
func SparseSeeds(t testing.TB) [][]byte {
	dir := t.TempDir()
	SparseSource(t, dir, 64<<10, 3)
	var out [][]byte
	for _, f := range SparseFormats {
		out = append(out, GNUTar(t, dir, f.Args, "sparse", "zeros"))
	}
	return out
}

// Duplicate is a layer that names a path more than once, or removes in
// the same layer a file it wrote: the later entry wins, and the
// snapshot still rebuilds the layer.
type Duplicate struct {
	Name    string
	Entries []Entry
	// Files maps paths to their content ("/" for a directory, "-" for
	// gone) after extraction.
	Files map[string]string
	// Shadowed counts the files kept aside for the rebuild.
	Shadowed int
}

// Duplicates are the layers naming paths twice the tests extract.
var Duplicates = []Duplicate{
	{
		Name:     "file twice",
		Entries:  []Entry{File("a", "first", 0o644), File("a", "second!", 0o600)},
		Files:    map[string]string{"a": "second!"},
		Shadowed: 1,
	},
	{
		Name:     "file then directory",
		Entries:  []Entry{File("a", "first", 0o644), Dir("a/", 0o755), File("a/in", "inside", 0o644)},
		Files:    map[string]string{"a": "/", "a/in": "inside"},
		Shadowed: 1,
	},
	{
		Name:     "file in a directory, then the directory as a file",
		Entries:  []Entry{File("d/x", "inner", 0o644), File("d/sub/y", "deeper", 0o644), File("d", "now a file", 0o644)},
		Files:    map[string]string{"d": "now a file", "d/x": "-"},
		Shadowed: 2,
	},
	{
		Name:     "whiteout after the file",
		Entries:  []Entry{File("a", "first", 0o644), Whiteout("a")},
		Files:    map[string]string{"a": "first"},
		Shadowed: 0,
	},
	{
		Name:     "whiteout of a directory holding this layer's file",
		Entries:  []Entry{File("d/x", "inner", 0o644), Whiteout("d"), Opaque("d")},
		Files:    map[string]string{"d": "/", "d/x": "inner"},
		Shadowed: 0,
	},
	{
		Name: "hard links to a name given twice",
		Entries: []Entry{
			File("a", "first", 0o644), Hardlink("l", "a"),
			File("a", "second!", 0o644), Hardlink("m", "a"),
		},
		Files:    map[string]string{"a": "second!", "l": "first", "m": "second!"},
		Shadowed: 1,
	},
	{
		Name: "a file written through a symlink the layer then points elsewhere, then replaced",
		Entries: []Entry{
			Dir("d", 0o755), Dir("e", 0o755), Symlink("s", "d"),
			File("s/f", "one", 0o644), File("d/g", "gee", 0o644), Symlink("s", "/e"),
			File("e/f", "other", 0o644), File("s/g", "not gee", 0o644), File("d/f", "two", 0o644),
		},
		Files: map[string]string{"d/f": "two", "e/f": "other", "d/g": "gee", "e/g": "not gee"},
		// s/f's file, and where s/g's is.
		Shadowed: 2,
	},
	{
		Name:     "symlink replacing a file, empty file twice",
		Entries:  []Entry{File("a", "first", 0o644), Symlink("a", "b"), File("e", "", 0o644), File("e", "", 0o644)},
		Files:    map[string]string{"e": ""},
		Shadowed: 1,
	},
}

// streamTree lists every entry under root with its type, mode, owner,
// size, mtime, content hash, link target, xattrs and hardlink group.
func streamTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	groups := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		if rel != "." {
			line += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			line += fmt.Sprintf(" size=%d sha=%s", st.Size, FileSum(t, p)[:16])
			if st.Nlink > 1 {
				if first, ok := groups[st.Ino]; ok {
					line += " link-of=" + first
				} else {
					groups[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		names, err := fsx.ListXattrs(p)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			buf := make([]byte, 4096)
			sz, err := unix.Lgetxattr(p, n, buf)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %s=%q", n, buf[:sz])
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SameTree fails the test with every entry in which the trees got and
// want differ: type, mode, owner, size, mtime, content, link target,
// xattrs and hardlink groups.
func SameTree(t testing.TB, got, want string) {
	t.Helper()
	g, w := streamTree(t, got), streamTree(t, want)
	if strings.Join(g, "\n") == strings.Join(w, "\n") {
		return
	}
	for i := 0; i < max(len(g), len(w)); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			t.Errorf("entry %d:\n got  %s\n want %s", i, a, b)
		}
	}
}

// BenchLayer is a layer shaped like a slice of a rootfs: 2,000 files of
// 1-32 KiB in 40 directories, 100 symlinks and 100 hard links (about
// 32 MiB). Half of each file is compressible.
func BenchLayer() []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	var es []Entry
	for d := 0; d < 40; d++ {
		es = append(es, Dir(fmt.Sprintf("usr/lib/d%02d/", d), 0o755))
	}
	body := make([]byte, 32<<10)
	for i := 0; i < 2000; i++ {
		n := 1<<10 + rng.IntN(31<<10)
		for j := 0; j < n; j++ {
			if j < n/2 {
				body[j] = byte(rng.Uint32())
			} else {
				body[j] = "abcdefgh"[j%8]
			}
		}
		es = append(es, File(fmt.Sprintf("usr/lib/d%02d/f%04d", i%40, i), string(body[:n]), 0o644))
	}
	for i := 0; i < 100; i++ {
		es = append(es,
			Symlink(fmt.Sprintf("usr/lib/d%02d/s%03d", i%40, i), fmt.Sprintf("f%04d", i)),
			Hardlink(fmt.Sprintf("usr/lib/d%02d/h%03d", i%40, i), fmt.Sprintf("usr/lib/d%02d/f%04d", i%40, i)))
	}
	return Tar(es...)
}

// OpenStandard builds the Standard image in a new layout and opens it as
// "v1" (the layout closes with the test).
func OpenStandard(t testing.TB) (string, *layout.Layout, *layout.Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	Must(t, BuildImage(dir, "v1", Image{Layers: Standard(nil)}))
	l, err := layout.Open(dir)
	Must(t, err)
	t.Cleanup(func() { l.Close() })
	img, err := l.Image("v1", nil)
	Must(t, err)
	return dir, l, img
}
