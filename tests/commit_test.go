package tests

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	snapbundle "github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layer"
	lt "github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// cmtTree describes every file under root, one line per path: type, mode,
// owner, size, content hash, link count, link target, device, mtime (not
// the root's: no layer sets it) and xattrs (overlay's own left out).
// Files without read permission are read with it lent for a moment.
func cmtTree(t testing.TB, root string, links bool) map[string]string {
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
		var b strings.Builder
		fmt.Fprintf(&b, "type=%o mode=%o owner=%d:%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fmt.Fprintf(&b, " size=%d sha=%s", st.Size, lt.FileSum(t, p)[:12])
			if links {
				fmt.Fprintf(&b, " links=%d", st.Nlink)
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			fmt.Fprintf(&b, " link=%s", l)
		case unix.S_IFCHR, unix.S_IFBLK:
			fmt.Fprintf(&b, " dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if rel != "." {
			fmt.Fprintf(&b, " mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		b.WriteString(cmtXattrs(t, p))
		out[rel] = b.String()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return out
}

func cmtXattrs(t testing.TB, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		if err == unix.ENOTSUP {
			return ""
		}
		t.Fatalf("list xattrs of %s: %v", p, err)
	}
	var names []string
	for _, s := range strings.Split(string(buf[:n]), "\x00") {
		if s != "" && !strings.HasPrefix(s, "trusted.overlay.") && !strings.HasPrefix(s, "user.overlay.") {
			names = append(names, s)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("read xattr %s of %s: %v", name, p, err)
		}
		if name == layer.RootlessXattr {
			// umoci writes root as the no-op ID 2^32-1 where strata
			// writes no field: compare the owners they mean.
			u, g, err := layer.DecodeRootless(v[:m])
			if err != nil {
				t.Fatalf("%s of %s: %v", name, p, err)
			}
			fmt.Fprintf(&b, " %s=%d:%d", name, noop(u), noop(g))
			continue
		}
		fmt.Fprintf(&b, " %s=%x", name, v[:m])
	}
	return b.String()
}

func noop(id int) int {
	if uint32(id) == 1<<32-1 {
		return 0
	}
	return id
}

func cmtMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// cmtChange makes every kind of change on the standard image's rootfs, as
// root: add, modify, delete, chmod, chown, a directory replaced by a
// file, a new hardlink, an xattr, a whole directory replaced, a symlink
// retargeted, a fifo and (when devices is set) a device. With owner >= 0
// everything it creates is given to that user, as if the user had made
// it, and chown is written as the user.rootlesscontainers xattr.
func cmtChange(t testing.TB, r string, owner int, devices bool) {
	t.Helper()
	p := func(n string) string { return filepath.Join(r, n) }
	var made []string
	create := func(n string) { made = append(made, p(n)) }
	cmtMust(t, os.WriteFile(p("etc/added"), []byte("added by commit\n"), 0o640))
	create("etc/added")
	cmtMust(t, os.MkdirAll(p("newdir/sub"), 0o755))
	create("newdir")
	create("newdir/sub")
	cmtMust(t, os.WriteFile(p("newdir/sub/f"), []byte("deep new"), 0o600))
	create("newdir/sub/f")
	f, err := os.OpenFile(p("etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	cmtMust(t, err)
	_, err = f.WriteString("bob:x:1001:1001::/:/bin/sh\n")
	cmtMust(t, err)
	cmtMust(t, f.Close())
	cmtMust(t, os.Remove(p("etc/group")))
	cmtMust(t, os.RemoveAll(p("home/alice")))
	cmtMust(t, os.Chmod(p("usr/bin/sgid"), 0o2700))
	if owner < 0 {
		cmtMust(t, os.Lchown(p("app"), 1000, 10))
	} else {
		cmtMust(t, unix.Lsetxattr(p("app"), layer.RootlessXattr, layer.EncodeRootless(1000, 10), 0))
	}
	cmtMust(t, os.RemoveAll(p("opq")))
	cmtMust(t, os.WriteFile(p("opq"), []byte("was a directory"), 0o644))
	create("opq")
	cmtMust(t, os.Link(p("big"), p("big-third")))
	cmtMust(t, unix.Lsetxattr(p("usr/lib/libc.so"), "user.test", []byte("set"), 0))
	cmtMust(t, os.RemoveAll(p("file-to-dir")))
	cmtMust(t, os.Mkdir(p("file-to-dir"), 0o711))
	create("file-to-dir")
	cmtMust(t, os.WriteFile(p("file-to-dir/replaced"), []byte("new contents"), 0o644))
	create("file-to-dir/replaced")
	cmtMust(t, os.Remove(p("lib")))
	cmtMust(t, os.Symlink("usr/lib64", p("lib")))
	create("lib")
	cmtMust(t, unix.Mkfifo(p("new-fifo"), 0o600))
	create("new-fifo")
	if devices {
		cmtMust(t, unix.Mknod(p("dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	} else {
		// A rootless rootfs holds an empty file in place of the device:
		// a chmod there must still commit a device.
		cmtMust(t, os.Chmod(p("dev/null"), 0o600))
	}
	cmtMust(t, os.WriteFile(p("etc/motd"), []byte("changed through a hardlink\n"), 0o644))
	if owner >= 0 {
		for _, m := range made {
			cmtMust(t, os.Lchown(m, owner, owner))
		}
	}
}

func cmtUnmount(t testing.TB, rootfs string) {
	t.Cleanup(func() {
		for i := 0; i < 4; i++ {
			if ok, _ := overlay.IsMounted(rootfs); !ok {
				return
			}
			if err := unix.Unmount(rootfs, 0); err != nil {
				_ = unix.Unmount(rootfs, unix.MNT_DETACH)
			}
		}
	})
}

func cmtImage(t testing.TB, dir, ref string) *layout.Image {
	t.Helper()
	l, err := layout.Open(dir)
	cmtMust(t, err)
	defer l.Close()
	img, err := l.Image(ref, nil)
	cmtMust(t, err)
	return img
}

// TestCommitEmptyLayer: unpack, no change, commit: a history entry marked
// empty_layer and no new layer.
func TestCommitEmptyLayer(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	bundle := filepath.Join(work, "b")
	strata(t, "unpack", "--root", filepath.Join(work, "store"), img+":v1", bundle)
	out := strata(t, "commit", "-m", "nothing changed", bundle, img+":v2")
	parent, got := cmtImage(t, img, "v1"), cmtImage(t, img, "v2")
	if strings.TrimSpace(out) != got.Descriptor.Digest.String() {
		t.Fatalf("commit printed %q, want the manifest digest %s", out, got.Descriptor.Digest)
	}
	if len(got.Manifest.Layers) != len(parent.Manifest.Layers) || len(got.Config.RootFS.DiffIDs) != len(parent.Config.RootFS.DiffIDs) {
		t.Fatalf("empty commit added a layer: %d layers", len(got.Manifest.Layers))
	}
	h := got.Config.History
	if len(h) != len(parent.Config.History)+1 || !h[len(h)-1].EmptyLayer || h[len(h)-1].Comment != "nothing changed" {
		t.Fatalf("history: %+v", h)
	}
}

// TestCommitUnpackEqual commits every kind of change, as root, with both
// drivers; the new image unpacked by strata and by umoci equals the
// changed tree.
func TestCommitUnpackEqual(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			img := standardImage(t)
			work := t.TempDir()
			bundle := filepath.Join(work, "b")
			strata(t, "unpack", "--driver", driver, "--root", filepath.Join(work, "store"), img+":v1", bundle)
			rootfs := filepath.Join(bundle, "rootfs")
			cmtUnmount(t, rootfs)
			// Overlay shows a file copied up apart from its lower
			// hardlinks: link counts are only compared for vfs.
			links := driver == "vfs"
			cmtChange(t, rootfs, -1, true)
			want := cmtTree(t, rootfs, links)
			strata(t, "commit", "--author", "tester", "-c", `CMD ["/bin/cat", "/etc/added"]`, bundle, img+":v2")

			fresh := filepath.Join(work, "fresh")
			strata(t, "unpack", "--root", filepath.Join(work, "vfs-store"), img+":v2", fresh)
			lt.DiffTrees(t, "changed", want, "strata unpack", cmtTree(t, filepath.Join(fresh, "rootfs"), links))
			um := filepath.Join(work, "umoci")
			mustRun(t, "umoci", "unpack", "--image", img+":v2", um)
			lt.DiffTrees(t, "changed", want, "umoci unpack", cmtTree(t, filepath.Join(um, "rootfs"), links))
			// The bundle works on the new image: nothing more to commit.
			lt.DiffTrees(t, "changed", want, "bundle after commit", cmtTree(t, rootfs, links))
			strata(t, "commit", bundle, img+":v3")
			if n, m := len(cmtImage(t, img, "v3").Manifest.Layers), len(cmtImage(t, img, "v2").Manifest.Layers); n != m {
				t.Fatalf("commit right after a commit added a layer (%d, %d)", n, m)
			}
			c := cmtImage(t, img, "v2").Config
			if c.Author != "tester" || len(c.Config.Cmd) != 2 || c.Config.Cmd[1] != "/etc/added" || c.Config.WorkingDir != "/home" {
				t.Fatalf("config: author %q cmd %v workdir %q", c.Author, c.Config.Cmd, c.Config.WorkingDir)
			}
		})
	}
}

// TestCommitReproducibleCLI: with SOURCE_DATE_EPOCH the same change in two
// bundles gives the same layer and manifest.
func TestCommitReproducibleCLI(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	var got []string
	for i := range 2 {
		bundle := filepath.Join(work, fmt.Sprint("b", i))
		strata(t, "unpack", "--root", filepath.Join(work, "store"), img+":v1", bundle)
		r := filepath.Join(bundle, "rootfs")
		cmtMust(t, os.WriteFile(filepath.Join(r, "etc/new"), []byte("same"), 0o644))
		cmtMust(t, os.Remove(filepath.Join(r, "etc/passwd")))
		cmd := exec.Command(strataBin, "--quiet", "commit", "--created-by", "build", bundle, img+":r")
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("commit: %v", err)
		}
		got = append(got, strings.TrimSpace(string(out)))
	}
	if got[0] != got[1] {
		t.Fatalf("same change, different manifests: %s, %s", got[0], got[1])
	}
}

// TestCommitRootless runs unpack, commit and the peers as the unprivileged
// test user, with both drivers: owners come back from
// user.rootlesscontainers (vfs) or from strata's user namespace, where a
// chown made inside it shows (overlay).
func TestCommitRootless(t *testing.T) {
	uid, gid := rootlessAccount(t)
	needTool(t, "umoci")
	t.Run("vfs", func(t *testing.T) {
		dir := rootlessDir(t, uid, gid)
		img := standardImageIn(t, filepath.Join(dir, "img"))
		rlChownTree(t, img, uid, gid)
		bundle := filepath.Join(dir, "b")
		store := filepath.Join(dir, "store")
		t.Cleanup(func() { fsx.RemoveAll(store); fsx.RemoveAll(bundle) })
		rlMust(t, rlAsUser(t, dir, "unpack", "--root", store, img+":v1", bundle))
		rootfs := filepath.Join(bundle, "rootfs")
		cmtChange(t, rootfs, uid, false)
		want := cmtTree(t, rootfs, true)
		rlMust(t, rlAsUser(t, dir, "commit", bundle, img+":v2"))
		// Committed owners are the image's, not the user's.
		cmtRootlessOwners(t, dir, img, true)
		fresh := filepath.Join(dir, "fresh")
		rlMust(t, rlAsUser(t, dir, "unpack", "--root", filepath.Join(dir, "store2"), img+":v2", fresh))
		t.Cleanup(func() { fsx.RemoveAll(filepath.Join(dir, "store2")); fsx.RemoveAll(fresh) })
		lt.DiffTrees(t, "changed", want, "strata unpack", cmtTree(t, filepath.Join(fresh, "rootfs"), true))
		um := filepath.Join(dir, "umoci")
		rlMust(t, rlRunIn(t, dir, "runuser", "-u", rootlessUser, "--", "umoci", "unpack", "--rootless", "--image", img+":v2", um))
		t.Cleanup(func() { fsx.RemoveAll(um) })
		lt.DiffTrees(t, "changed", want, "umoci unpack --rootless", cmtTree(t, filepath.Join(um, "rootfs"), true))

		// Root does not commit the user's bundle (its store is theirs).
		if r := strataFail(t, "commit", bundle, img+":v3"); r.Code != 1 || !strings.Contains(r.Stderr, "as that user") {
			t.Fatalf("root's commit of a rootless bundle: exit %d: %s", r.Code, r.Stderr)
		}
	})
	t.Run("overlay", func(t *testing.T) {
		// python3 sets an xattr inside the namespace (no setfattr here).
		if _, err := os.Stat("/usr/bin/python3"); err != nil {
			t.Fatalf("/usr/bin/python3 is required by this test (Debian package python3-minimal): %v", err)
		}
		dir := rootlessDir(t, uid, gid)
		img := standardImageIn(t, filepath.Join(dir, "img"))
		rlChownTree(t, img, uid, gid)
		bundle := filepath.Join(dir, "b")
		store := filepath.Join(dir, "store")
		t.Cleanup(func() { fsx.RemoveAll(store); fsx.RemoveAll(bundle) })
		rlMust(t, rlAsUser(t, dir, "unpack", "--driver", "overlay", "--root", store, img+":v1", bundle))
		rec, err := snapbundle.ReadRecord(bundle)
		cmtMust(t, err)
		if rec.Driver != "overlay" {
			t.Fatalf("rootless unpack used %s, not overlay", rec.Driver)
		}
		// The changes are made inside strata's namespace, through the
		// mount, by its root: chown works there on mapped IDs.
		script := `set -e; cd "$STRATA_ROOTFS"
echo 'added by commit' > etc/added
mkdir -p newdir/sub; echo deep > newdir/sub/f
echo 'bob:x:1001:1001::/:/bin/sh' >> etc/passwd
rm etc/group; rm -r home/alice
chmod 2700 usr/bin/sgid
chown 1000:10 app
rm -r opq; echo 'was a directory' > opq
ln big big-third
rm -r file-to-dir; mkdir file-to-dir; echo new > file-to-dir/replaced
rm lib; ln -s usr/lib64 lib
mkfifo new-fifo
chmod 600 dev/null
echo changed > etc/motd
/usr/bin/python3 -c 'import os; os.setxattr("usr/lib/libc.so", "user.test", b"set")'
`
		rlMust(t, rlAsUser(t, dir, "mount", bundle, "--", "/bin/sh", "-c", script))
		changed := cmtNSTree(t, dir, bundle)
		if len(changed) < 30 || !strings.Contains(changed["app"], " 1000:10 ") || !strings.Contains(changed["usr/lib/libc.so"], "user.test=") {
			t.Fatalf("the namespace's view of the changed rootfs is not what the script made: %d paths, app %q, usr/lib/libc.so %q", len(changed), changed["app"], changed["usr/lib/libc.so"])
		}
		rlMust(t, rlAsUser(t, dir, "commit", bundle, img+":v2"))
		// The new image, unpacked with overlay from the committed
		// snapshots, looks the same from inside the namespace.
		again := filepath.Join(dir, "again")
		t.Cleanup(func() { fsx.RemoveAll(again) })
		rlMust(t, rlAsUser(t, dir, "unpack", "--driver", "overlay", "--root", store, img+":v2", again))
		lt.DiffTrees(t, "changed (in the namespace)", changed, "v2 unpacked (in the namespace)", cmtNSTree(t, dir, again))
		cmtRootlessOwners(t, dir, img, true)
		fresh := filepath.Join(dir, "fresh")
		rlMust(t, rlAsUser(t, dir, "unpack", "--root", filepath.Join(dir, "store2"), img+":v2", fresh))
		t.Cleanup(func() { fsx.RemoveAll(filepath.Join(dir, "store2")); fsx.RemoveAll(fresh) })
		um := filepath.Join(dir, "umoci")
		rlMust(t, rlRunIn(t, dir, "runuser", "-u", rootlessUser, "--", "umoci", "unpack", "--rootless", "--image", img+":v2", um))
		t.Cleanup(func() { fsx.RemoveAll(um) })
		a, b := cmtTree(t, filepath.Join(fresh, "rootfs"), false), cmtTree(t, filepath.Join(um, "rootfs"), false)
		lt.DiffTrees(t, "strata unpack", a, "umoci unpack --rootless", b)
		for path, want := range map[string]string{
			"etc/added": "added by commit\n", "newdir/sub/f": "deep\n", "opq": "was a directory\n",
			"file-to-dir/replaced": "new\n", "etc/motd": "changed\n",
		} {
			if got, err := os.ReadFile(filepath.Join(fresh, "rootfs", path)); err != nil || string(got) != want {
				t.Errorf("%s: %q (%v), want %q", path, got, err, want)
			}
		}
		for _, gone := range []string{"etc/group", "home/alice"} {
			if _, err := os.Lstat(filepath.Join(fresh, "rootfs", gone)); !os.IsNotExist(err) {
				t.Errorf("%s: not deleted (%v)", gone, err)
			}
		}
		if l, err := os.Readlink(filepath.Join(fresh, "rootfs", "lib")); err != nil || l != "usr/lib64" {
			t.Errorf("lib -> %q (%v)", l, err)
		}
		buf := make([]byte, 16)
		if n, err := unix.Lgetxattr(filepath.Join(fresh, "rootfs", "usr/lib/libc.so"), "user.test", buf); err != nil || string(buf[:n]) != "set" {
			t.Errorf("usr/lib/libc.so user.test: %q (%v)", buf[:max(n, 0)], err)
		}
		// A second commit sees nothing: the bundle has a fresh upper.
		rlMust(t, rlAsUser(t, dir, "commit", bundle, img+":v3"))
		if n, m := len(cmtImage(t, img, "v3").Manifest.Layers), len(cmtImage(t, img, "v2").Manifest.Layers); n != m {
			t.Fatalf("commit right after a commit added a layer (%d, %d)", n, m)
		}
	})
}

// cmtNSTree describes an overlay bundle's rootfs as strata's user
// namespace shows it: type, mode, owner (the user.rootlesscontainers
// xattr where there is one, else the namespace's view), size (not for
// directories), mtime, link target and user.* xattrs of every path.
func cmtNSTree(t testing.TB, dir, bundle string) map[string]string {
	t.Helper()
	r := rlAsUser(t, dir, "mount", bundle, "--", "/usr/bin/python3", "-c", cmtDescribe)
	rlMust(t, r)
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if name, desc, ok := strings.Cut(line, "|"); ok {
			out[name] = desc
		}
	}
	return out
}

// cmtDescribe is the describing script cmtNSTree runs in the namespace.
const cmtDescribe = `
import os, stat
def varints(b):
    out, i = {}, 0
    while i < len(b):
        key, shift = 0, 0
        while True:
            c = b[i]; i += 1; key |= (c & 0x7f) << shift; shift += 7
            if c < 0x80: break
        v, shift = 0, 0
        while True:
            c = b[i]; i += 1; v |= (c & 0x7f) << shift; shift += 7
            if c < 0x80: break
        out[key >> 3] = v
    return out
root = os.environ["STRATA_ROOTFS"]
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        st = os.lstat(p)
        uid, gid = st.st_uid, st.st_gid
        xs = []
        if not stat.S_ISLNK(st.st_mode):
            for x in sorted(os.listxattr(p, follow_symlinks=False)):
                v = os.getxattr(p, x, follow_symlinks=False)
                if x == "user.rootlesscontainers":
                    f = varints(v); uid, gid = f.get(1, 0), f.get(2, 0)
                elif x.startswith("user.") and not x.startswith("user.overlay."):
                    xs.append(x + "=" + v.hex())
        size = "-" if stat.S_ISDIR(st.st_mode) else str(st.st_size)
        link = os.readlink(p) if stat.S_ISLNK(st.st_mode) else ""
        print("%s|%o %o %d:%d %s %d %s %s" % (os.path.relpath(p, root), stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), uid, gid, size, st.st_mtime_ns, link, " ".join(xs)))
`

func rlMust(t testing.TB, r result) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
}

// cmtRootlessOwners reads the new layer of LAYOUT:v2 and checks that
// owners are the image's: app chowned to 1000:10, new files root's.
func cmtRootlessOwners(t testing.TB, dir, img string, placeholder bool) {
	t.Helper()
	v2 := cmtImage(t, img, "v2")
	ld := v2.Manifest.Layers[len(v2.Manifest.Layers)-1]
	l, err := layout.Open(img)
	cmtMust(t, err)
	defer l.Close()
	rc, err := l.Blobs().Open(ld.Digest, ld.Size)
	cmtMust(t, err)
	defer rc.Close()
	list := mustRunIn(t, rc, "tar", "-tvzf", "-", "--numeric-owner")
	owners, modes := map[string]string{}, map[string]string{}
	for _, line := range strings.Split(list, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 {
			owners[strings.TrimSuffix(f[len(f)-1], "/")] = f[1]
			modes[strings.TrimSuffix(f[len(f)-1], "/")] = f[0]
		}
	}
	if placeholder && modes["dev/null"] != "crw-------" {
		t.Errorf("chmod of a placeholder committed %q, want the device crw-------\n%s", modes["dev/null"], list)
	}
	for path, want := range map[string]string{"app": "1000/10", "etc/added": "0/0", "newdir/sub/f": "0/0", "etc": "0/0"} {
		if owners[path] != want {
			t.Errorf("layer entry %s: owner %q, want %s\n%s", path, owners[path], want, list)
		}
	}
}

func mustRunIn(t testing.TB, stdin io.Reader, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = stdin
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out)
}

// TestCommitDockerPodman saves a committed image and runs it in Docker and
// in podman, whose rootfs (exported) holds the change.
func TestCommitDockerPodman(t *testing.T) {
	needRoot(t)
	work := t.TempDir()
	// Docker refuses the standard image (a hardlink into a lower layer):
	// a plain busybox image.
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required by this test: %v", err)
	}
	img := filepath.Join(work, "img")
	base := lt.Tar(lt.Dir("bin", 0o755), lt.File("bin/busybox", string(bb), 0o755), lt.Symlink("bin/sh", "busybox"),
		lt.Dir("etc", 0o755), lt.File("etc/motd", "base\n", 0o644))
	cmtMust(t, lt.BuildImage(img, "v1", lt.Image{Layers: [][]byte{base}, Cmd: []string{"/bin/sh"}}))
	bundle := filepath.Join(work, "b")
	strata(t, "unpack", "--root", filepath.Join(work, "store"), img+":v1", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	cmtMust(t, os.WriteFile(filepath.Join(rootfs, "etc/added"), []byte("hello from a commit\n"), 0o644))
	cmtMust(t, os.Remove(filepath.Join(rootfs, "etc/motd")))
	name := "example.com/strata/committed:1"
	strata(t, "commit", "-c", `CMD ["/bin/sh", "-c", "cat /etc/added; test -e /etc/motd || echo motd gone"]`, bundle, img+":"+name)
	archive := filepath.Join(work, "committed.tar")
	strata(t, "save", "-o", archive, img+":"+name)

	e := startDockerd(t)
	e.must(t, "load", "-i", archive)
	if got := e.must(t, "run", "--rm", "--network=none", name); got != "hello from a commit\nmotd gone\n" {
		t.Fatalf("docker run: %q", got)
	}

	root := podmanRoot(t)
	podman(t, root, "load", "-i", archive)
	// podman asks runc for rlimits this machine refuses: a wrapper drops
	// them from the bundle podman writes, then runs runc.
	wrapper := filepath.Join(work, "runc-no-rlimits")
	cmtMust(t, os.WriteFile(wrapper, []byte(`#!/bin/sh
prev=
for a in "$@"; do
  if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then
    sed -i -e 's/,"rlimits":\[[^]]*\]//' -e 's/"rlimits":\[[^]]*\],\{0,1\}//' "$a/config.json"
  fi
  prev=$a
done
exec runc "$@"
`), 0o755))
	if got := podman(t, root, "--runtime", wrapper, "run", "--rm", "--network=none", name); got != "hello from a commit\nmotd gone\n" {
		t.Fatalf("podman run: %q", got)
	}
	ctr := strings.TrimSpace(podman(t, root, "create", name))
	export := filepath.Join(work, "podman.tar")
	podman(t, root, "export", "-o", export, ctr)
	list := mustRun(t, "tar", "-tf", export)
	if !strings.Contains("\n"+list, "\netc/added\n") || strings.Contains("\n"+list, "\netc/motd\n") || !strings.Contains("\n"+list, "\nbin/busybox\n") {
		t.Fatalf("podman's rootfs of the committed image:\n%s", list)
	}
	added := mustRun(t, "tar", "-xOf", export, "etc/added")
	if added != "hello from a commit\n" {
		t.Fatalf("podman's etc/added: %q", added)
	}
}

// TestCommitBuildLoop runs a command in the bundle with runc and commits,
// three times, with both drivers: a three-layer addition whose rootfs
// shows every step.
func TestCommitBuildLoop(t *testing.T) {
	needRoot(t)
	needTool(t, "runc")
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			img := standardImage(t)
			work := t.TempDir()
			bundle := filepath.Join(work, "b")
			strata(t, "unpack", "--driver", driver, "--root", filepath.Join(work, "store"), img+":v1", bundle)
			cmtUnmount(t, filepath.Join(bundle, "rootfs"))
			steps := []string{
				`echo one > /step1; rm /etc/motd; mkdir -p /var/lib/app; echo state1 > /var/lib/app/state`,
				`test -e /step1 && echo two > /step2; echo state2 > /var/lib/app/state; chmod 600 /step1`,
				`test -e /step2 && echo three > /step3; rm -r /var/lib/app; ln /step3 /step3-link`,
			}
			runcRoot := filepath.Join(work, "runc")
			for i, step := range steps {
				cmtSetProcess(t, bundle, []string{"/bin/sh", "-c", step})
				id := fmt.Sprintf("strata-commit-%d-%d", os.Getpid(), i)
				t.Cleanup(func() { _ = exec.Command("runc", "--root", runcRoot, "delete", "-f", id).Run() })
				if out, err := exec.Command("runc", "--root", runcRoot, "run", "-b", bundle, id).CombinedOutput(); err != nil {
					t.Fatalf("step %d: runc run: %v\n%s", i+1, err, out)
				}
				strata(t, "commit", "-m", fmt.Sprint("step ", i+1), bundle, img+":v1")
			}
			got := cmtImage(t, img, "v1")
			if n := len(got.Manifest.Layers); n != 6 {
				t.Fatalf("%d layers, want the 3 of the base and 3 steps", n)
			}
			h := got.Config.History
			if len(h) < 3 || h[len(h)-1].CreatedBy != "/bin/sh -c "+steps[2] || h[len(h)-1].Comment != "step 3" || h[len(h)-1].EmptyLayer {
				t.Fatalf("history: %+v", h)
			}
			fresh := filepath.Join(work, "fresh")
			strata(t, "unpack", "--root", filepath.Join(work, "vfs-store"), img+":v1", fresh)
			r := filepath.Join(fresh, "rootfs")
			for path, want := range map[string]string{"step1": "one\n", "step2": "two\n", "step3": "three\n", "step3-link": "three\n"} {
				if b, err := os.ReadFile(filepath.Join(r, path)); err != nil || string(b) != want {
					t.Errorf("%s: %q (%v), want %q", path, b, err, want)
				}
			}
			for _, gone := range []string{"etc/motd", "var/lib/app"} {
				if _, err := os.Lstat(filepath.Join(r, gone)); !os.IsNotExist(err) {
					t.Errorf("%s still there (%v)", gone, err)
				}
			}
			var st, st2 unix.Stat_t
			cmtMust(t, unix.Lstat(filepath.Join(r, "step1"), &st))
			if st.Mode&0o777 != 0o600 {
				t.Errorf("step1 mode %o, want 600", st.Mode&0o777)
			}
			cmtMust(t, unix.Lstat(filepath.Join(r, "step3"), &st))
			cmtMust(t, unix.Lstat(filepath.Join(r, "step3-link"), &st2))
			if st.Ino != st2.Ino {
				t.Error("step3-link is not a hardlink of step3")
			}
		})
	}
}

// cmtSetProcess sets the bundle's process arguments, without a terminal
// and without rlimits (this machine refuses setrlimit).
func cmtSetProcess(t testing.TB, bundle string, args []string) {
	t.Helper()
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	cmtMust(t, err)
	var m map[string]any
	cmtMust(t, json.Unmarshal(b, &m))
	proc := m["process"].(map[string]any)
	delete(proc, "rlimits")
	proc["terminal"] = false
	proc["args"] = args
	b, err = json.Marshal(m)
	cmtMust(t, err)
	cmtMust(t, os.WriteFile(p, b, 0o644))
}

// TestCommitCLIErrors: usage errors exit 2, a directory that is not a
// bundle exits 1, and neither touches the layout.
func TestCommitCLIErrors(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	bundle := filepath.Join(work, "b")
	strata(t, "unpack", "--root", filepath.Join(work, "store"), img+":v1", bundle)
	before, err := os.ReadFile(filepath.Join(img, "index.json"))
	cmtMust(t, err)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"commit", bundle}, 2, "takes 2 argument"},
		{[]string{"commit", bundle, img + ":@sha256:" + strings.Repeat("a", 64)}, 2, "tag, not a digest"},
		{[]string{"commit", "--compression", "xz", bundle, img + ":x"}, 2, "xz"},
		{[]string{"commit", "--timestamp", "yesterday", bundle, img + ":x"}, 2, "--timestamp"},
		{[]string{"commit", "-c", "RUN true", bundle, img + ":x"}, 2, "RUN"},
		{[]string{"commit", work, img + ":x"}, 1, "not a strata bundle"},
	} {
		r := strataFail(t, tc.args...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) {
			t.Errorf("strata %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.Code, r.Stderr, tc.code, tc.msg)
		}
	}
	after, err := os.ReadFile(filepath.Join(img, "index.json"))
	cmtMust(t, err)
	if string(before) != string(after) {
		t.Fatal("a failed commit changed index.json")
	}
}

// TestDemoCommitSteps: strata demo unpacks, changes, commits and saves; the
// kept layout holds the committed image and the archive loads back.
func TestDemoCommitSteps(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	strata(t, "demo", "--keep", dir)
	// Again into the same directory: the earlier bundle is replaced.
	out := strata(t, "demo", "--keep", dir)
	for _, want := range []string{"strata unpack", "strata commit", "strata save", "whiteout"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	v1, v2 := cmtImage(t, dir, "demo"), cmtImage(t, dir, "demo-v2")
	if len(v2.Manifest.Layers) != len(v1.Manifest.Layers)+1 {
		t.Fatalf("demo-v2 has %d layers, demo %d", len(v2.Manifest.Layers), len(v1.Manifest.Layers))
	}
	loaded := filepath.Join(t.TempDir(), "loaded")
	strata(t, "load", filepath.Join(dir, "demo-docker.tar"), loaded)
	fresh := filepath.Join(t.TempDir(), "fresh")
	strata(t, "unpack", "--root", filepath.Join(t.TempDir(), "store"), loaded+":strata-demo-v2:latest", fresh)
	if b, err := os.ReadFile(filepath.Join(fresh, "rootfs", "etc", "motd")); err != nil || string(b) != "committed by strata demo\n" {
		t.Fatalf("etc/motd of the saved, loaded, unpacked commit: %q (%v)", b, err)
	}
}

// TestCommitKilled kills strata commit at several points (storing the
// layer, extracting its snapshot, moving the bundle) with both drivers:
// the layout stays consistent (fsck clean, the name absent or complete),
// and the next commit gives an image with the change.
func TestCommitKilled(t *testing.T) {
	needRoot(t)
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			img := standardImage(t)
			work := t.TempDir()
			bundle := filepath.Join(work, "b")
			store := filepath.Join(work, "store")
			strata(t, "unpack", "--driver", driver, "--root", store, img+":v1", bundle)
			rootfs := filepath.Join(bundle, "rootfs")
			cmtUnmount(t, rootfs)
			data := make([]byte, 48<<20)
			for i := range data {
				data[i] = byte(i * 7 / 5)
			}
			cmtMust(t, os.WriteFile(filepath.Join(rootfs, "payload"), data, 0o644))
			want := sha256.Sum256(data)
			for _, delay := range []time.Duration{30 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond, 900 * time.Millisecond} {
				cmd := exec.Command(strataBin, "--quiet", "commit", bundle, img+":v2")
				cmtMust(t, cmd.Start())
				time.Sleep(delay)
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				if r := runCmd(t, nil, strataBin, "fsck", img); r.Code != 0 {
					t.Fatalf("fsck after a commit killed at %v: %s%s", delay, r.Stdout, r.Stderr)
				}
				if _, err := snapbundle.ReadRecord(bundle); err != nil {
					t.Fatalf("bundle record after a commit killed at %v: %v", delay, err)
				}
			}
			strata(t, "commit", bundle, img+":v2")
			fresh := filepath.Join(work, "fresh")
			strata(t, "unpack", "--root", filepath.Join(work, "vfs-store"), img+":v2", fresh)
			got, err := os.ReadFile(filepath.Join(fresh, "rootfs", "payload"))
			cmtMust(t, err)
			if sha256.Sum256(got) != want {
				t.Fatal("payload of the committed image differs")
			}
			// The bundle is consistent: nothing left to commit.
			strata(t, "commit", bundle, img+":v3")
			if n, m := len(cmtImage(t, img, "v3").Manifest.Layers), len(cmtImage(t, img, "v2").Manifest.Layers); n != m {
				t.Fatalf("commit after the last commit added a layer (%d, %d)", n, m)
			}
		})
	}
}

// TestCommitUIDMap: a bundle unpacked with --uid-map/--gid-map commits
// the image's owners, the shift undone.
func TestCommitUIDMap(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	bundle := filepath.Join(work, "b")
	strata(t, "unpack", "--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536", "--root", filepath.Join(work, "store"), img+":v1", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	cmtMust(t, os.WriteFile(filepath.Join(rootfs, "etc/owned"), []byte("x"), 0o644))
	cmtMust(t, os.Lchown(filepath.Join(rootfs, "etc/owned"), 100000+7, 200000+8))
	cmtMust(t, os.Lchown(filepath.Join(rootfs, "etc/passwd"), 100000+1000, 200000+1000))
	strata(t, "commit", bundle, img+":v2")
	v2 := cmtImage(t, img, "v2")
	ld := v2.Manifest.Layers[len(v2.Manifest.Layers)-1]
	l, err := layout.Open(img)
	cmtMust(t, err)
	defer l.Close()
	rc, err := l.Blobs().Open(ld.Digest, ld.Size)
	cmtMust(t, err)
	defer rc.Close()
	list := mustRunIn(t, rc, "tar", "-tvzf", "-", "--numeric-owner")
	for _, want := range []string{" 7/8 ", " 1000/1000 "} {
		if !strings.Contains(list, want) {
			t.Errorf("layer lacks an entry owned %s:\n%s", want, list)
		}
	}
	if strings.Contains(list, "100000") || strings.Contains(list, "200000") || strings.Contains(list, "101000") {
		t.Errorf("layer has host IDs:\n%s", list)
	}
}
