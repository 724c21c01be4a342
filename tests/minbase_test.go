package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/debmirror"
	"github.com/strata-oci/strata/layout"
	lt "github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// minbaseCacheDir keeps the debootstrap tarball between runs: making it
// takes debootstrap's download and install (tens of seconds to minutes),
// reading it back a second.
const minbaseCacheDir = "/var/cache/strata-tests"

// minbaseTar returns a tarball of a Debian minbase tree of this machine's
// release, made with debootstrap from apt's mirror on the first run and
// cached. It fails the test when debootstrap is missing or fails: a cache
// from an earlier run is no excuse for CI to lack the tool.
func minbaseTar(t *testing.T) string {
	t.Helper()
	needRoot(t)
	needTool(t, "debootstrap")
	needTool(t, "tar")
	suite := debmirror.HostSuite()
	cached := filepath.Join(minbaseCacheDir, "minbase-"+suite+".tar")
	if _, err := os.Stat(cached); err == nil {
		return cached
	}
	mirror, err := debmirror.Mirror(suite)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(minbaseCacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Built beside the cache and renamed into place, so an interrupted
	// run leaves no half tarball behind for the next run to trust; what
	// such a run left is removed here.
	if stale, _ := filepath.Glob(filepath.Join(minbaseCacheDir, "minbase-"+suite+"-*")); len(stale) > 0 {
		for _, p := range stale {
			if err := os.RemoveAll(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	tmp, err := os.MkdirTemp(minbaseCacheDir, "minbase-"+suite+"-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	t.Logf("debootstrap --variant=minbase %s from %s (once; cached in %s)", suite, mirror, cached)
	if r := runCmd(t, nil, "debootstrap", "--variant=minbase", suite, rootfs, mirror); r.Code != 0 {
		t.Fatalf("debootstrap --variant=minbase %s %s %s: exit %d\n%s\n%s", suite, rootfs, mirror, r.Code, tail(r.Stdout, 2000), tail(r.Stderr, 2000))
	}
	// Downloaded packages and indexes are a third of the tree and no part
	// of what an image holds; the benchmark drops them too.
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		ents, _ := os.ReadDir(filepath.Join(rootfs, p))
		for _, e := range ents {
			if e.Type().IsRegular() && e.Name() != "lock" {
				if err := os.Remove(filepath.Join(rootfs, p, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	out := filepath.Join(tmp, "minbase.tar")
	if r := runCmd(t, nil, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", rootfs, "-cf", out, "."); r.Code != 0 {
		t.Fatalf("tar of the minbase tree: exit %d: %s", r.Code, r.Stderr)
	}
	if err := os.Rename(out, cached); err != nil {
		t.Fatal(err)
	}
	return cached
}

// firstLines is the first n lines of s: a tree diff can run to
// thousands.
func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... %d more lines", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}

// minbaseChanges is a second layer over the minbase tree doing what real
// image builds do to a base: delete files and a directory, replace a
// directory by a file and a file by a directory, hardlink to a file only
// the lower layer holds, make a populated directory opaque, and add files
// with owners and an xattr.
func minbaseChanges() []byte {
	return lt.Tar(
		lt.Dir("etc", 0o755),
		lt.Whiteout("etc/motd"),
		lt.Whiteout("etc/issue.net"),
		lt.File("etc/hostname", "minbase\n", 0o644),
		// A file becomes a directory.
		lt.Dir("etc/issue", 0o750),
		lt.File("etc/issue/inside", "was a file\n", 0o644),
		lt.Whiteout("usr/share/doc/bash"),
		lt.Whiteout("usr/share/doc/dash/copyright"),
		// A directory becomes a file.
		lt.File("usr/share/doc/debconf", "was a directory\n", 0o644),
		// A hard link to a file of the layer below.
		lt.Hardlink("usr/local/bin/bash-link", "usr/bin/bash"),
		// The opaque marker after the new file: it hides only what the
		// lower layer held.
		lt.Dir("usr/share/locale", 0o755),
		lt.File("usr/share/locale/README", "only this\n", 0o644),
		lt.Opaque("usr/share/locale"),
		lt.Owned(lt.Dir("srv/data", 0o2770), 1000, 100),
		lt.WithXattrs(lt.Owned(lt.File("srv/data/notes", "owned\n", 0o640), 1000, 100), map[string]string{"user.note": "kept"}),
	)
}

// minbaseImage writes LAYOUT:v1 into dir: the minbase tarball imported
// with strata import, and minbaseChanges appended with the layout library.
func minbaseImage(t *testing.T, dir string) string {
	t.Helper()
	src := minbaseTar(t)
	img := filepath.Join(dir, "img")
	strata(t, "import", "--created", "2024-01-02T03:04:05Z", src, img+":base")
	l, err := layout.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base, err := l.Image("base", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := layout.ParseConfig(base.ConfigRaw)
	if err != nil {
		t.Fatal(err)
	}
	changes := minbaseChanges()
	top, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, lt.Gzip(changes))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.AppendLayer(lt.DiffID(changes)); err != nil {
		t.Fatal(err)
	}
	if err := cfg.AppendHistory(ocispec.History{CreatedBy: "minbase changes"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetRuntime("Cmd", []string{"/bin/bash"}); err != nil {
		t.Fatal(err)
	}
	layers := append(append([]ocispec.Descriptor{}, base.Manifest.Layers...), top)
	desc, err := l.PutImage(cfg, layers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(desc, "v1"); err != nil {
		t.Fatal(err)
	}
	return img + ":v1"
}

// checkMinbaseChanges proves the tree is the two-layer image and not the
// base alone: the comparison with umoci is only as strong as this.
func checkMinbaseChanges(t *testing.T, rootfs string, state []string) {
	t.Helper()
	if len(state) < 3000 {
		t.Fatalf("%s: only %d paths: not a Debian minbase tree", rootfs, len(state))
	}
	for _, gone := range []string{"etc/motd", "etc/issue.net", "usr/share/doc/bash", "usr/share/doc/dash/copyright", "usr/share/locale/de"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); err == nil {
			t.Errorf("%s: %s is still there", rootfs, gone)
		}
	}
	var st unix.Stat_t
	for p, typ := range map[string]uint32{
		"etc/issue/inside":        unix.S_IFREG,
		"usr/share/doc/debconf":   unix.S_IFREG,
		"usr/share/locale/README": unix.S_IFREG,
		"usr/local/bin/bash-link": unix.S_IFREG,
		"srv/data":                unix.S_IFDIR,
		"usr/share/doc/apt":       unix.S_IFDIR,
	} {
		if err := unix.Lstat(filepath.Join(rootfs, p), &st); err != nil || st.Mode&unix.S_IFMT != typ {
			t.Errorf("%s: %s: type %o (%v), want %o", rootfs, p, st.Mode&unix.S_IFMT, err, typ)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(rootfs, "usr/share/locale")); err != nil || len(ents) != 1 {
		t.Errorf("%s: opaque usr/share/locale holds %d entries (%v), want only README", rootfs, len(ents), err)
	}
	a, errA := os.ReadFile(filepath.Join(rootfs, "usr/bin/bash"))
	b, errB := os.ReadFile(filepath.Join(rootfs, "usr/local/bin/bash-link"))
	if errA != nil || errB != nil || len(a) < 100000 || string(a) != string(b) {
		t.Errorf("%s: usr/local/bin/bash-link is not usr/bin/bash (%v, %v)", rootfs, errA, errB)
	}
}

// TestUnpackMinbaseMatchesUmoci unpacks a real Debian minbase tree with a
// layer of deletions, replacements, a hardlink into the base and an opaque
// directory over it, with both drivers as root and with vfs as an
// unprivileged user, and checks every tree is umoci unpack's (owners from
// user.rootlesscontainers when rootless) in names, types, modes, owners,
// xattrs, link targets, contents and file mtimes.
func TestUnpackMinbaseMatchesUmoci(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	uid, gid := rootlessAccount(t)
	dir := rootlessDir(t, uid, gid)
	ref := minbaseImage(t, dir)
	rlChownTree(t, strings.TrimSuffix(ref, ":v1"), uid, gid)

	// As root.
	umociB := filepath.Join(dir, "umoci")
	mustRun(t, "umoci", "unpack", "--image", ref, umociB)
	want := treeState(t, filepath.Join(umociB, "rootfs"))
	checkMinbaseChanges(t, filepath.Join(umociB, "rootfs"), want)
	vfsB := filepath.Join(dir, "vfs")
	strata(t, "unpack", "--root", filepath.Join(dir, "store-vfs"), "--driver", "vfs", ref, vfsB)
	got := treeState(t, filepath.Join(vfsB, "rootfs"))
	checkMinbaseChanges(t, filepath.Join(vfsB, "rootfs"), got)
	if d := diffLines(want, got); d != "" {
		t.Errorf("vfs: strata's rootfs differs from umoci's (- umoci, + strata):\n%s", firstLines(d, 60))
	}
	// The overlay tree is read through the mount, overlay's own xattrs
	// left out; link counts are compared too: a hard link into a lower
	// layer must stay one file with its target.
	ovlB := filepath.Join(dir, "overlay")
	ovlUnmountCleanup(t, ovlB)
	strata(t, "unpack", "--root", filepath.Join(dir, "store-overlay"), "--driver", "overlay", ref, ovlB)
	checkMinbaseChanges(t, filepath.Join(ovlB, "rootfs"), got)
	ovlDiffTrees(t, "overlay", cmtTree(t, filepath.Join(ovlB, "rootfs"), true), "umoci", cmtTree(t, filepath.Join(umociB, "rootfs"), true))
	os.RemoveAll(umociB)

	// As the unprivileged test user: owners live in the xattr.
	rlUmociB := filepath.Join(dir, "umoci-rootless")
	if r := rlRunIn(t, dir, "runuser", "-u", rootlessUser, "--", needTool(t, "umoci"), "unpack", "--rootless", "--image", ref, rlUmociB); r.Code != 0 {
		t.Fatalf("umoci unpack --rootless: exit %d: %s", r.Code, r.Stderr)
	}
	want = treeState(t, filepath.Join(rlUmociB, "rootfs"))
	checkMinbaseChanges(t, filepath.Join(rlUmociB, "rootfs"), want)
	b := filepath.Join(dir, "vfs-rootless")
	if r := rlAsUser(t, dir, "unpack", "--root", filepath.Join(dir, "store-rootless"), "--driver", "vfs", ref, b); r.Code != 0 {
		t.Fatalf("rootless strata unpack: exit %d: %s", r.Code, r.Stderr)
	}
	got = treeState(t, filepath.Join(b, "rootfs"))
	checkMinbaseChanges(t, filepath.Join(b, "rootfs"), got)
	if d := diffLines(want, got); d != "" {
		t.Errorf("rootless vfs: strata's rootfs differs from umoci --rootless's (- umoci, + strata):\n%s", firstLines(d, 60))
	}
}
