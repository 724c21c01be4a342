package tests

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// sparseSum hashes a file, and says how much disk it takes.
func sparseSum(t *testing.T, p string) (sum string, allocated int64) {
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
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil)), st.Blocks * 512
}

// TestUnpackSparseLayers unpacks an image whose layers GNU tar wrote with
// --sparse: a 256 MiB file that is mostly holes, as an old GNU sparse
// entry in one layer and a PAX 1.0 sparse entry in the other, and 16 MiB
// of zeros stored as a plain entry. With both drivers the files read
// back as they were, take a few KiB of disk in the snapshots and the
// rootfs, and the snapshots rebuild their layers.
func TestUnpackSparseLayers(t *testing.T) {
	needRoot(t)
	needTool(t, "tar")
	src := t.TempDir()
	const size = 256 << 20
	f, err := os.Create(filepath.Join(src, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	for off, s := range map[int64]string{0: "head", size / 3: "middle", size - 4: "tail"} {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "zeros"), make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	gnu := mustRun(t, "tar", "-C", src, "--sparse", "--format=gnu", "--transform=s/sparse/gnu-sparse/", "-cf", "-", "sparse")
	pax := mustRun(t, "tar", "-C", src, "--sparse", "--format=pax", "--sparse-version=1.0", "--transform=s/sparse/pax-sparse/", "-cf", "-", "sparse", "zeros")
	if len(gnu) > 1<<20 || len(pax) > 17<<20 {
		t.Fatalf("tar did not write sparse entries: %d and %d bytes", len(gnu), len(pax))
	}
	img := filepath.Join(t.TempDir(), "layout")
	if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: [][]byte{[]byte(gnu), []byte(pax)}, Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	want["gnu-sparse"], _ = sparseSum(t, filepath.Join(src, "sparse"))
	want["pax-sparse"] = want["gnu-sparse"]
	want["zeros"], _ = sparseSum(t, filepath.Join(src, "zeros"))

	check := func(t *testing.T, dir string, names ...string) {
		t.Helper()
		for _, n := range names {
			sum, used := sparseSum(t, filepath.Join(dir, n))
			if sum != want[n] {
				t.Errorf("%s/%s: content differs", dir, n)
			}
			if used > 256<<10 {
				t.Errorf("%s/%s: %d bytes of disk", dir, n, used)
			}
		}
	}
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			work := t.TempDir()
			root := filepath.Join(work, "store")
			b1, b2 := filepath.Join(work, "b1"), filepath.Join(work, "b2")
			ovlUnmountCleanup(t, b1)
			ovlUnmountCleanup(t, b2)
			// The first unpack extracts, the second copies or mounts
			// what the store holds.
			strata(t, "unpack", "--root", root, "--driver", driver, img+":v1", b1)
			strata(t, "unpack", "--root", root, "--driver", driver, img+":v1", b2)
			for _, b := range []string{b1, b2} {
				check(t, filepath.Join(b, "rootfs"), "gnu-sparse", "pax-sparse", "zeros")
			}
			snaps, _ := filepath.Glob(filepath.Join(root, "snapshots", "*", "*", "fs", "pax-sparse"))
			if len(snaps) == 0 {
				t.Fatal("no snapshot holds pax-sparse")
			}
			for _, p := range snaps {
				check(t, filepath.Dir(p), "pax-sparse", "zeros")
			}
			if out := strata(t, "snapshots", "verify", "--root", root, img+":v1"); strings.Count(out, " ok ") != 2 {
				t.Fatalf("verify:\n%s", out)
			}
		})
	}
}

// dupBase and dupLayer make an image whose second layer names paths more
// than once: a file twice, a file then a directory, a file in a
// directory then the directory as a file, a whiteout after the file it
// names, hard links to a name given twice (each links the file the name
// had at that point), the whiteout of a lower directory into which the
// layer wrote a file, and unreadable files replaced.
func dupLayers() [][]byte {
	base := layertest.Tar(
		layertest.Dir("c1", 0o755), layertest.File("c1/a", "lower", 0o644),
		layertest.Dir("c6", 0o755), layertest.Dir("c6/d", 0o755), layertest.File("c6/d/y", "lower y", 0o644),
	)
	top := layertest.Tar(
		layertest.File("c1/a", "first", 0o644), layertest.File("c1/a", "second!", 0o600),
		layertest.Dir("c2", 0o755), layertest.File("c2/a", "first", 0o644), layertest.Dir("c2/a", 0o750), layertest.File("c2/a/in", "inside", 0o644),
		layertest.Dir("c3", 0o755), layertest.Dir("c3/d", 0o755), layertest.File("c3/d/x", "inner", 0o644), layertest.File("c3/d", "now a file", 0o644),
		layertest.Dir("c4", 0o755), layertest.File("c4/a", "first", 0o644), layertest.Whiteout("c4/a"),
		layertest.Dir("c5", 0o755), layertest.File("c5/a", "first", 0o644), layertest.Hardlink("c5/l", "c5/a"),
		layertest.File("c5/a", "second!", 0o644), layertest.Hardlink("c5/m", "c5/a"),
		layertest.File("c6/d/x", "upper x", 0o644), layertest.Whiteout("c6/d"),
		// Files without read rights, replaced: a rootless snapshot keeps
		// them too.
		layertest.Dir("c7", 0o755), layertest.File("c7/a", "secret", 0o000), layertest.Hardlink("c7/l", "c7/a"),
		layertest.File("c7/a", "new", 0o644), layertest.File("c7/b", "hidden", 0o000), layertest.File("c7/b", "shown", 0o644),
	)
	return [][]byte{base, top}
}

// TestUnpackDuplicateNamesMatchesUmoci: such a layer unpacks as umoci
// unpacks it (the later entry wins), with both drivers, and its snapshot
// still rebuilds it: the replaced files are kept with the snapshot's
// metadata, and go with the snapshot.
func TestUnpackDuplicateNamesMatchesUmoci(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	img := filepath.Join(t.TempDir(), "layout")
	if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: dupLayers(), Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	ub := filepath.Join(work, "umoci")
	mustRun(t, "umoci", "unpack", "--image", img+":v1", ub)
	theirs := cmtTree(t, filepath.Join(ub, "rootfs"), true)
	for p, want := range map[string]string{"c1/a": "second!", "c2/a/in": "inside", "c3/d": "now a file", "c4/a": "first", "c5/l": "first", "c5/m": "second!", "c6/d/x": "upper x"} {
		if b, err := os.ReadFile(filepath.Join(ub, "rootfs", p)); err != nil || string(b) != want {
			t.Fatalf("umoci's %s: %q (%v), want %q", p, b, err, want)
		}
	}
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			root := filepath.Join(work, "store-"+driver)
			b := filepath.Join(work, driver)
			ovlUnmountCleanup(t, b)
			strata(t, "unpack", "--root", root, "--driver", driver, img+":v1", b)
			ours := cmtTree(t, filepath.Join(b, "rootfs"), true)
			// umoci leaves the directory a whiteout pruned with the time
			// of extraction; strata gives it back the image's.
			for _, tree := range []map[string]string{ours, theirs} {
				tree["c6/d"], _, _ = strings.Cut(tree["c6/d"], " mtime=")
			}
			ovlDiffTrees(t, "strata "+driver, ours, "umoci", theirs)
			if out := strata(t, "snapshots", "verify", "--root", root, img+":v1"); strings.Count(out, " ok ") != 2 {
				t.Fatalf("verify:\n%s", out)
			}
			kept, _ := filepath.Glob(filepath.Join(root, "snapshots", "*", "*", "shadow", "*"))
			if len(kept) != 6 {
				t.Errorf("%d replaced files kept, want 6: %v", len(kept), kept)
			}
			// Removing the snapshots removes what they kept.
			if driver == "overlay" {
				strata(t, "umount", b)
			}
			if err := os.RemoveAll(b); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{dupChain(t, root, 2), dupChain(t, root, 1)} {
				strata(t, "snapshots", "rm", "--root", root, id)
			}
			if left, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(left) != 0 {
				t.Fatalf("%d snapshot directories left after rm", len(left))
			}
		})
	}
}

// dupChain returns the ID of the store's snapshot at depth n (1: base).
func dupChain(t *testing.T, root string, n int) string {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(root, "snapshots", "*", "*", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range metas {
		meta, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if hasParent := strings.Contains(string(meta), `"parent"`); hasParent == (n == 2) {
			return filepath.Base(filepath.Dir(p))
		}
	}
	t.Fatalf("no snapshot at depth %d in %s", n, root)
	return ""
}

// TestUnpackDuplicateNamesRootless: an unprivileged user's snapshot of
// the layer rebuilds it too, unreadable replaced files included.
func TestUnpackDuplicateNamesRootless(t *testing.T) {
	needRoot(t)
	needTool(t, "setpriv")
	work := worldWritableTempDir(t)
	img := filepath.Join(work, "layout")
	if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: dupLayers(), Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "chown", "-R", "65534:65534", img)
	asNobody := func(args ...string) result {
		return runCmd(t, nil, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", strataBin, "--quiet"}, args...)...)
	}
	root, b := filepath.Join(work, "store"), filepath.Join(work, "b")
	t.Cleanup(func() { fsx.RemoveAll(root); fsx.RemoveAll(b) })
	if r := asNobody("unpack", "--root", root, img+":v1", b); r.Code != 0 {
		t.Fatalf("rootless unpack: exit %d: %s", r.Code, r.Stderr)
	}
	for p, want := range map[string]string{"c1/a": "second!", "c5/l": "first", "c7/a": "new", "c7/b": "shown"} {
		if got, err := os.ReadFile(filepath.Join(b, "rootfs", p)); err != nil || string(got) != want {
			t.Errorf("%s: %q (%v), want %q", p, got, err, want)
		}
	}
	if r := asNobody("snapshots", "verify", "--root", root, img+":v1"); r.Code != 0 || strings.Count(r.Stdout, " ok ") != 2 {
		t.Fatalf("rootless verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
