package layer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
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
		if names, _ := fsx.ListXattrs(p); len(names) > 0 {
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

func TestHostileLayers(t *testing.T) {
	needRoot(t)
	for _, mode := range []struct {
		name string
		opts ApplyOptions
	}{{"root", ApplyOptions{}}, {"rootless", ApplyOptions{Rootless: true}}} {
		probe := newSandbox(t)
		for name := range layertest.Hostile(probe.sentinel) {
			t.Run(mode.name+"/"+name, func(t *testing.T) {
				sb := newSandbox(t)
				// Rebuild the corpus for this sandbox's sentinel path.
				entries := layertest.Hostile(sb.sentinel)[name]
				before := sb.state(t)
				err := Apply(context.Background(), sb.root, bytes.NewReader(layertest.Tar(entries...)), mode.opts, Files{})
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
	for _, entries := range layertest.Hostile(probe) {
		f.Add(layertest.Tar(entries...))
	}
	// Small seeds: the fuzzer slows to a crawl on large inputs.
	f.Add(layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/f", "x", 0o4755),
		layertest.Hardlink("d/h", "d/f"), layertest.Symlink("s", "/d"), layertest.Char("c", 1, 3),
		layertest.Fifo("p"), layertest.Whiteout("d/f"), layertest.Opaque("d"),
		layertest.WithXattrs(layertest.File("x", "", 0o644), map[string]string{"user.a": "b"})))
	// Sparse entries in GNU tar's four forms.
	for _, s := range layertest.SparseSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newSandbox(t)
		before := sb.state(t)
		_ = Apply(context.Background(), sb.root, bytes.NewReader(data), ApplyOptions{}, Files{})
		_ = Apply(context.Background(), sb.root, bytes.NewReader(data), ApplyOptions{Rootless: true}, Files{})
		// The path unpack takes: tar-split's reader, recording.
		_ = applyRecording(context.Background(), sb.root, bytes.NewReader(data), ApplyOptions{}, Files{}, newPacker(io.Discard), "")
		if after := sb.state(t); after != before {
			t.Fatalf("layer changed files outside the root\nbefore:\n%s\nafter:\n%s", before, after)
		}
		_ = fsx.RemoveAll(sb.root)
	})
}
