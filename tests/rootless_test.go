package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-oci/strata/overlay"
	lt "github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// rootlessUser is the unprivileged user rootless tests run strata as;
// tests/setup.sh creates it, and so does rootlessAccount when missing.
const rootlessUser = "strata-test"

// rootlessSingleUser has no subordinate IDs: strata maps it alone.
const rootlessSingleUser = "strata-test-single"

// rootlessAccount makes sure rootlessUser exists with subordinate ID
// ranges and returns its uid and gid.
func rootlessAccount(t testing.TB) (uid, gid int) {
	t.Helper()
	u := rlEnsureUser(t, rootlessUser, false)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if strings.Contains("\n"+string(b), "\n"+rootlessUser+":") {
			continue
		}
		// The range setup.sh uses, far above what useradd hands out.
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		_, err = fmt.Fprintf(fh, "%s:1879048192:65536\n", rootlessUser)
		fh.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// rlEnsureUser creates a user when missing (a system user has no
// subordinate IDs allocated).
func rlEnsureUser(t testing.TB, name string, system bool) *user.User {
	t.Helper()
	needRoot(t)
	for _, tool := range []string{"runuser", "newuidmap", "newgidmap", "useradd"} {
		needTool(t, tool)
	}
	u, err := user.Lookup(name)
	if err == nil {
		return u
	}
	args := []string{"--create-home", "--shell", "/bin/sh", "--user-group"}
	if system {
		args = append(args, "--system")
	}
	mustRun(t, "useradd", append(args, name)...)
	if u, err = user.Lookup(name); err != nil {
		t.Fatal(err)
	}
	return u
}

// rlImage writes a two-layer image with a whiteout, an opaque directory,
// an owned file, a device and an xattr into dir/img, owned by uid:gid,
// and returns the layout's path.
func rlImage(t testing.TB, dir string, uid, gid int) string {
	t.Helper()
	img := filepath.Join(dir, "img")
	l1 := lt.Tar(
		lt.Dir("etc", 0o755), lt.File("etc/a", "a", 0o644),
		lt.Dir("d", 0o755), lt.File("d/x", "x", 0o644),
		lt.Owned(lt.File("owned", "o", 0o640), 1000, 1000),
		lt.Char("null", 1, 3), lt.File("gone", "g", 0o644),
		lt.WithXattrs(lt.File("noted", "n", 0o644), map[string]string{"user.note": "kept"}),
	)
	l2 := lt.Tar(
		lt.Whiteout("gone"),
		lt.Dir("d", 0o750), lt.File("d/y", "y", 0o644), lt.Opaque("d"),
		lt.File("etc/b", "b", 0o600),
	)
	if err := lt.BuildImage(img, "v1", lt.Image{Layers: [][]byte{l1, l2}}); err != nil {
		t.Fatal(err)
	}
	rlChownTree(t, img, uid, gid)
	return img
}

// rootlessDir makes a directory the test user owns (t.TempDir's parents
// are closed to other users); it is removed when the test ends.
func rootlessDir(t testing.TB, uid, gid int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "strata-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rlChownTree gives a tree to the test user.
func rlChownTree(t testing.TB, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rlAsUser runs strata as the test user in dir.
func rlAsUser(t testing.TB, dir string, args ...string) result {
	t.Helper()
	full := append([]string{"-u", rootlessUser, "--", strataBin, "--quiet"}, args...)
	r := rlRunIn(t, dir, "runuser", full...)
	return r
}

func rlRunIn(t testing.TB, dir, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	// The test user must be able to reach its working directory.
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s %s: %v", name, strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// TestRootlessOverlay unpacks with the overlay driver as an unprivileged
// user: strata enters its own user namespace (the user's subordinate
// ranges mapped), writes layers with user.overlay xattrs and mounts with
// userxattr; the mount works for a command run through strata mount, and
// root can mount the same bundle.
func TestRootlessOverlay(t *testing.T) {
	uid, gid := rootlessAccount(t)
	dir := rootlessDir(t, uid, gid)
	img := rlImage(t, dir, uid, gid)
	store := filepath.Join(dir, "store")
	b := filepath.Join(dir, "bundle")
	ovlUnmountCleanup(t, b)

	r := rlAsUser(t, dir, "unpack", "--root", store, "--driver", "overlay", img+":v1", b)
	if r.Code != 0 {
		t.Fatalf("rootless unpack: exit %d: %s", r.Code, r.Stderr)
	}
	if strings.Contains(r.Stderr, "falling back") {
		t.Fatalf("rootless unpack fell back to vfs: %s", r.Stderr)
	}
	rec := ovlRecord(t, b)
	if rec.Driver != "overlay" || !rec.Rootless {
		t.Fatalf("record: driver %q rootless %v", rec.Driver, rec.Rootless)
	}
	if form, _ := os.ReadFile(filepath.Join(store, "overlay.json")); !strings.Contains(string(form), `"user"`) {
		t.Errorf("store xattr form: %s", form)
	}

	// The layer snapshot holds the overlay forms of the whiteouts, in the
	// user namespace's xattr form, and belongs to the user.
	tops, _ := filepath.Glob(filepath.Join(store, "snapshots", "overlay.*", rec.Chain[1].Encoded(), "fs"))
	if len(tops) != 1 {
		t.Fatalf("%d overlay snapshots of the top layer, want 1", len(tops))
	}
	top := tops[0]
	if !ovlIsWhiteoutAt(filepath.Join(top, "gone")) {
		t.Errorf("%s/gone is not a 0:0 character device", top)
	}
	if ok, err := overlay.IsOpaque(filepath.Join(top, "d"), overlay.User); !ok || err != nil {
		t.Errorf("%s/d lacks user.overlay.opaque: %v", top, err)
	}
	if ok, _ := overlay.IsOpaque(filepath.Join(top, "d"), overlay.Trusted); ok {
		t.Errorf("%s/d has trusted.overlay.opaque in a rootless store", top)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(top, "etc", "b"), &st); err != nil || int(st.Uid) != uid {
		t.Errorf("layer file owner %d (%v), want the user %d", st.Uid, err, uid)
	}

	// A command run on the mount, inside strata's namespace.
	script := `cd "$STRATA_ROOTFS" && find . | sort && cat /proc/self/uid_map && cat etc/b && echo new > new && rm etc/a`
	r = rlAsUser(t, dir, "mount", b, "--", "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("rootless mount -- sh: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{"./d/y\n", "./etc/a\n", "./null\n", "./owned\n", "./noted\n", "b"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("rootless mount view lacks %q:\n%s", want, r.Stdout)
		}
	}
	for _, unwanted := range []string{"./d/x", "./gone"} {
		if strings.Contains(r.Stdout, unwanted) {
			t.Errorf("rootless mount view shows %q, which a whiteout or opaque directory hides:\n%s", unwanted, r.Stdout)
		}
	}
	// The namespace maps the user to root and the subordinate range
	// above it.
	if !strings.Contains(r.Stdout, fmt.Sprintf(" %d          1", uid)) || !strings.Contains(r.Stdout, "65536") {
		t.Errorf("namespace mapping is not the user plus a subordinate range:\n%s", r.Stdout)
	}
	upper := filepath.Join(b, ".strata", "upper")
	if got, err := os.ReadFile(filepath.Join(upper, "new")); err != nil || string(got) != "new\n" {
		t.Errorf("upper/new = %q %v", got, err)
	}
	if !ovlIsWhiteoutAt(filepath.Join(upper, "etc", "a")) {
		t.Errorf("deleting etc/a left no whiteout in the upper directory")
	}
	if ok, _ := overlay.IsMounted(filepath.Join(b, "rootfs")); ok {
		t.Errorf("the namespace's mount is visible outside it")
	}

	// Without a command the mount would vanish with strata: refused.
	for _, args := range [][]string{{"mount", b}, {"umount", b}} {
		r := rlAsUser(t, dir, args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, "user namespace") {
			t.Errorf("rootless strata %v: exit %d, %q", args, r.Code, r.Stderr)
		}
	}

	// Root mounts the same bundle, with userxattr.
	strata(t, "mount", b)
	info := ovlMountOptions(t, filepath.Join(b, "rootfs"))
	if !strings.Contains(info, "userxattr") {
		t.Errorf("root's mount of a rootless bundle lacks userxattr: %s", info)
	}
	tree := cmtTree(t, filepath.Join(b, "rootfs"), false)
	for _, want := range []string{"d/y", "etc/b", "new", "null", "owned"} {
		if _, ok := tree[want]; !ok {
			t.Errorf("root's mount lacks %s", want)
		}
	}
	for _, gone := range []string{"d/x", "gone", "etc/a"} {
		if _, ok := tree[gone]; ok {
			t.Errorf("root's mount shows %s", gone)
		}
	}
	if !strings.Contains(tree["noted"], "user.note=") {
		t.Errorf("noted lost its xattr: %q", tree["noted"])
	}
	strata(t, "umount", b)
}

// TestRootlessSingleMapping: a user without subordinate IDs gets a
// namespace that maps only itself, and overlay still works there.
func TestRootlessSingleMapping(t *testing.T) {
	u := rlEnsureUser(t, rootlessSingleUser, true)
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, _ := os.ReadFile(f)
		if strings.Contains("\n"+string(b), "\n"+rootlessSingleUser+":") || strings.Contains("\n"+string(b), "\n"+u.Uid+":") {
			t.Fatalf("%s gives %s subordinate IDs; this test needs a user without them", f, rootlessSingleUser)
		}
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir := rootlessDir(t, uid, gid)
	img := rlImage(t, dir, uid, gid)
	b := filepath.Join(dir, "bundle")
	ovlUnmountCleanup(t, b)
	run := func(args ...string) result {
		return rlRunIn(t, dir, "runuser", append([]string{"-u", rootlessSingleUser, "--", strataBin, "--quiet"}, args...)...)
	}
	if r := run("unpack", "--root", filepath.Join(dir, "store"), "--driver", "overlay", img+":v1", b); r.Code != 0 || strings.Contains(r.Stderr, "falling back") {
		t.Fatalf("unpack: exit %d: %s", r.Code, r.Stderr)
	}
	r := run("mount", b, "--", "sh", "-c", `cat /proc/self/uid_map; cd "$STRATA_ROOTFS" && find . | sort`)
	if r.Code != 0 {
		t.Fatalf("mount -- sh: exit %d: %s", r.Code, r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if f := strings.Fields(lines[0]); len(f) != 3 || f[0] != "0" || f[1] != u.Uid || f[2] != "1" {
		t.Errorf("uid_map %q, want only 0 -> %s", lines[0], u.Uid)
	}
	if len(lines) > 1 && strings.Fields(lines[1])[0] == "1" {
		t.Errorf("a second uid range is mapped: %q", lines[1])
	}
	if !strings.Contains(r.Stdout, "./d/y\n") || strings.Contains(r.Stdout, "./d/x") || strings.Contains(r.Stdout, "./gone") {
		t.Errorf("rootfs view:\n%s", r.Stdout)
	}
}
