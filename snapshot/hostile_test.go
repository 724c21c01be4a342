package snapshot

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// sandbox is a directory holding the extraction root and a sentinel tree
// that no layer may touch.
type sandbox struct {
	dir, root, sentinel string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	dir := t.TempDir()
	sb := &sandbox{dir: dir, root: filepath.Join(dir, "root"), sentinel: filepath.Join(dir, "sentinel")}
	for _, d := range []string{sb.root, sb.sentinel, filepath.Join(sb.sentinel, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sb.sentinel, "file"), []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sb.sentinel, "sub", "deep"), []byte("deep"), 0o600); err != nil {
		t.Fatal(err)
	}
	return sb
}

// state describes everything outside the root: names, types, modes,
// owners, sizes, mtimes, contents and xattrs.
func (sb *sandbox) state(t testing.TB) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(sb.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == sb.root {
			return fs.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d %d %d", strings.TrimPrefix(p, sb.dir), st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Nano())
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		if names, _ := listXattrs(p); len(names) > 0 {
			sort.Strings(names)
			line += " " + strings.Join(names, ",")
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// hostileLayers is a corpus of layers that try to reach outside the root;
// sentinel is the absolute path of the sentinel directory.
func hostileLayers(sentinel string) map[string][]layertest.Entry {
	L := layertest.File
	return map[string][]layertest.Entry{
		"dotdot file":              {L("../sentinel/file", "pwned", 0o644)},
		"dotdot deep":              {L("a/../../sentinel/new", "pwned", 0o644)},
		"absolute name":            {L(sentinel+"/file", "pwned", 0o644)},
		"dotdot dir":               {layertest.Dir("../sentinel/sub", 0o777)},
		"symlink parent escape":    {layertest.Symlink("up", "../../../../.."), L("up"+sentinel+"/file", "pwned", 0o644)},
		"absolute symlink dir":     {layertest.Symlink("s", sentinel), L("s/file", "pwned", 0o644), L("s/new", "pwned", 0o644)},
		"symlink to root":          {layertest.Symlink("s", "/"), layertest.Dir("s"+sentinel, 0o777), L("s"+sentinel+"/file", "pwned", 0o644)},
		"symlink replaces dir":     {layertest.Dir("d", 0o755), layertest.Symlink("d", sentinel), L("d/file", "pwned", 0o644)},
		"write over symlink":       {layertest.Symlink("f", sentinel+"/file"), L("f", "pwned", 0o644)},
		"dir over symlink":         {layertest.Symlink("d", sentinel), layertest.Dir("d", 0o700)},
		"chmod via symlink":        {layertest.Symlink("x", sentinel+"/file"), layertest.Symlink("x", sentinel+"/sub")},
		"hardlink dotdot":          {layertest.Hardlink("h", "../sentinel/file")},
		"hardlink absolute":        {layertest.Hardlink("h", sentinel+"/file"), L("h", "pwned", 0o644)},
		"hardlink via symlink":     {layertest.Symlink("s", sentinel), layertest.Hardlink("h", "s/file")},
		"hardlink to symlink":      {layertest.Symlink("s", sentinel+"/file"), layertest.Hardlink("h", "s"), L("h", "pwned", 0o644)},
		"whiteout dotdot":          {layertest.Whiteout("../sentinel/file")},
		"whiteout parent name":     {layertest.Dir("a", 0o755), {Name: "a/.wh..", Type: '0', Mode: 0o644}},
		"whiteout via symlink":     {layertest.Symlink("s", sentinel), layertest.Whiteout("s/file"), layertest.Whiteout("s/sub")},
		"whiteout symlink to root": {layertest.Symlink("s", "/"), layertest.Whiteout("s" + sentinel)},
		"opaque via symlink":       {layertest.Symlink("s", sentinel), layertest.Opaque("s")},
		"opaque dotdot":            {layertest.Opaque("../sentinel")},
		"root as file":             {L(".", "x", 0o644)},
		"xattr via symlink":        {layertest.Symlink("s", sentinel+"/file"), layertest.WithXattrs(layertest.Symlink("s", sentinel+"/file"), map[string]string{"trusted.pwned": "1"})},
		"device over symlink":      {layertest.Symlink("n", sentinel+"/file"), layertest.Fifo("n")},
		"mtime via symlink dir":    {layertest.Symlink("s", sentinel), layertest.Dir("s/sub", 0o700)},
		"dotdot symlink target":    {layertest.Symlink("s", "../sentinel"), L("s/file", "pwned", 0o644)},
	}
}

func TestHostileLayers(t *testing.T) {
	needRoot(t)
	for _, mode := range []struct {
		name string
		opts ApplyOptions
	}{{"root", ApplyOptions{}}, {"rootless", ApplyOptions{Rootless: true}}} {
		probe := newSandbox(t)
		for name := range hostileLayers(probe.sentinel) {
			t.Run(mode.name+"/"+name, func(t *testing.T) {
				sb := newSandbox(t)
				// Rebuild the corpus for this sandbox's sentinel path.
				entries := hostileLayers(sb.sentinel)[name]
				before := sb.state(t)
				err := Apply(sb.root, bytes.NewReader(layertest.Tar(entries...)), mode.opts, Files{})
				if after := sb.state(t); after != before {
					t.Fatalf("layer changed files outside the root (apply error: %v)\nbefore:\n%s\nafter:\n%s", err, before, after)
				}
				if _, serr := os.Lstat("/sentinel"); serr == nil {
					t.Fatal("layer created /sentinel on the host")
				}
				t.Logf("apply: %v", err)
			})
		}
	}
}

func FuzzApply(f *testing.F) {
	probe := "/nonexistent-sentinel"
	for _, entries := range hostileLayers(probe) {
		f.Add(layertest.Tar(entries...))
	}
	// Small seeds: the fuzzer slows to a crawl on large inputs.
	f.Add(layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/f", "x", 0o4755),
		layertest.Hardlink("d/h", "d/f"), layertest.Symlink("s", "/d"), layertest.Char("c", 1, 3),
		layertest.Fifo("p"), layertest.Whiteout("d/f"), layertest.Opaque("d"),
		layertest.WithXattrs(layertest.File("x", "", 0o644), map[string]string{"user.a": "b"})))
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newSandbox(t)
		before := sb.state(t)
		_ = Apply(sb.root, bytes.NewReader(data), ApplyOptions{}, Files{})
		_ = Apply(sb.root, bytes.NewReader(data), ApplyOptions{Rootless: true}, Files{})
		if after := sb.state(t); after != before {
			t.Fatalf("layer changed files outside the root\nbefore:\n%s\nafter:\n%s", before, after)
		}
		_ = RemoveAll(sb.root)
	})
}
