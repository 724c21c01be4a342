package tests

import (
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

// outsideState describes the sentinel tree and what else lies beside the
// layout, store and bundle: the parts of the disk no layer may touch.
func outsideState(t *testing.T, work, sentinel string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(sentinel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d %d", p, st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			line += fmt.Sprintf(" xattrs=%d", sz)
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(work)
	for _, e := range ents {
		lines = append(lines, "work/"+e.Name())
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestHostileLayersConfined unpacks, with the real binary, images whose
// layer tries to reach outside the root: every one is refused or confined,
// and nothing outside the bundle and the store is created, changed or
// removed.
func TestHostileLayersConfined(t *testing.T) {
	needRoot(t)
	for name := range layertest.Hostile("/x") {
		t.Run(name, func(t *testing.T) {
			work := t.TempDir()
			sentinel := filepath.Join(work, "sentinel")
			if err := os.MkdirAll(filepath.Join(sentinel, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(sentinel, "file"), []byte("precious"), 0o644)
			os.WriteFile(filepath.Join(sentinel, "sub", "deep"), []byte("deep"), 0o600)
			layer := layertest.Tar(layertest.Hostile(sentinel)[name]...)
			img := filepath.Join(work, "layout")
			base := layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/passwd", "root:x:0:0::/:/bin/sh\n", 0o644))
			if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: [][]byte{base, layer}}); err != nil {
				t.Fatal(err)
			}
			os.MkdirAll(filepath.Join(work, "store"), 0o700)
			before := outsideState(t, work, sentinel)
			r := runCmd(t, nil, strataBin, "--quiet", "unpack", "--root", filepath.Join(work, "store"), img+":v1", filepath.Join(work, "bundle"))
			after := outsideState(t, work, sentinel)
			after = strings.Replace(after, "\nwork/bundle", "", 1)
			if after != before {
				t.Fatalf("unpack (exit %d, %s) changed things outside the root:\nbefore:\n%s\nafter:\n%s", r.Code, strings.TrimSpace(r.Stderr), before, after)
			}
			if _, err := os.Lstat("/sentinel"); err == nil {
				t.Fatal("a layer created /sentinel on the host")
			}
			if r.Code != 0 && !strings.HasPrefix(r.Stderr, "strata: ") {
				t.Fatalf("failure is not one strata error line: %q", r.Stderr)
			}
			if r.Code != 0 {
				if _, err := os.Stat(filepath.Join(work, "bundle")); err == nil {
					t.Fatal("a refused unpack left its bundle directory")
				}
			}
		})
	}
}
