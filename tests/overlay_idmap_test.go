package tests

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
)

const idmArg = "0:100000:65536"

// idmOwner is the numeric owner of p.
func idmOwner(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
}

// idmSnapshots counts the snapshots of a store.
func idmSnapshots(t testing.TB, store string) int {
	t.Helper()
	ents, err := filepath.Glob(filepath.Join(store, "snapshots", "*", "*", "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// idmLayer returns the tar headers of the top layer of LAYOUT:ref.
func idmLayer(t testing.TB, dir, ref string) (map[string]*tar.Header, string) {
	t.Helper()
	img := cmtImage(t, dir, ref)
	ld := img.Manifest.Layers[len(img.Manifest.Layers)-1]
	l, err := layout.Open(dir)
	cmtMust(t, err)
	defer l.Close()
	rc, err := l.Blobs().Open(ld.Digest, ld.Size)
	cmtMust(t, err)
	defer rc.Close()
	dr, _, err := compression.NewSniffingReader(rc)
	cmtMust(t, err)
	defer dr.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, ld.Digest.String()
		}
		cmtMust(t, err)
		out[strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")] = h
	}
}

// idmChange changes a rootfs shifted by 0:100000:65536 as the
// container's root would: a new file, a chown to www-data (33), a
// deleted file of a lower layer, a new directory in the opaque one.
func idmChange(t testing.TB, r string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(r, s) }
	cmtMust(t, os.WriteFile(p("etc/created"), []byte("created\n"), 0o644))
	cmtMust(t, os.Lchown(p("etc/created"), 100000, 100000))
	cmtMust(t, os.Lchown(p("home/alice/notes"), 100033, 100033))
	cmtMust(t, os.Remove(p("etc/passwd")))
	cmtMust(t, os.Mkdir(p("opq/made"), 0o755))
	cmtMust(t, os.Lchown(p("opq/made"), 101000, 101000))
}

// TestOverlayIDMap unpacks the standard image with the overlay driver and
// a uid/gid map: through strata mount the owners are shifted, the shared
// snapshots are not copied, runc in the mapped user namespace sees the
// image's IDs, and a commit writes the image's IDs, the same layer vfs
// commits for the same change.
func TestOverlayIDMap(t *testing.T) {
	needRoot(t)
	needTool(t, "runc")
	ref := ovlStandardImage(t)
	img := strings.TrimSuffix(ref, ":v1")
	tmp := t.TempDir()
	// runc reaches the rootfs as the container's root, host user 100000.
	cmtMust(t, os.Chmod(tmp, 0o711))
	cmtMust(t, os.Chmod(filepath.Dir(tmp), 0o711))
	store := filepath.Join(tmp, "store")
	b := filepath.Join(tmp, "bundle")
	ovlUnmountCleanup(t, b)
	strata(t, "unpack", "--root", store, "--driver", "overlay", "--uid-map", idmArg, "--gid-map", idmArg, ref, b)
	if n := idmSnapshots(t, store); n != 3 {
		t.Fatalf("%d snapshots after the first unpack, want 3", n)
	}
	rec := ovlRecord(t, b)
	if rec.Driver != "overlay" || rec.IDMap == nil {
		t.Fatalf("record: driver %q, id map %+v", rec.Driver, rec.IDMap)
	}
	strata(t, "umount", b)
	strata(t, "mount", b)
	rootfs := filepath.Join(b, "rootfs")
	for p, want := range map[string]string{
		"":                 "100000:100000",
		"etc/motd":         "100000:100010",
		"home/alice/notes": "101000:101000",
		"srv":              "100033:100033",
		"usr/bin/suid":     "100000:100000",
		"big-link":         "100000:100000",
		"dev/null":         "100000:100000",
	} {
		if got := idmOwner(t, filepath.Join(rootfs, p)); got != want {
			t.Errorf("/%s: owner %s, want %s", p, got, want)
		}
	}
	var st unix.Stat_t
	cmtMust(t, unix.Lstat(filepath.Join(rootfs, "usr/bin/suid"), &st))
	if st.Mode&0o7777 != 0o4755 {
		t.Errorf("usr/bin/suid: mode %o, want 4755", st.Mode&0o7777)
	}
	for _, gone := range []string{"gone-file", "opq/lower", "usr/share-note"} {
		if _, err := os.Lstat(filepath.Join(rootfs, gone)); err == nil {
			t.Errorf("/%s is visible through the mapped overlay", gone)
		}
	}
	var big, bigLink unix.Stat_t
	cmtMust(t, unix.Lstat(filepath.Join(rootfs, "big"), &big))
	cmtMust(t, unix.Lstat(filepath.Join(rootfs, "big-link"), &bigLink))
	if big.Ino != bigLink.Ino {
		t.Errorf("big and big-link are not one file through the mapped overlay")
	}
	// The snapshots keep the image's IDs.
	var snapSrv int
	filepath.WalkDir(filepath.Join(store, "snapshots"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, "/fs/srv") {
			snapSrv++
			if got := idmOwner(t, p); got != "33:33" {
				t.Errorf("snapshot %s: owner %s, want 33:33", p, got)
			}
		}
		return nil
	})
	if snapSrv != 1 {
		t.Errorf("srv found in %d snapshots, want 1", snapSrv)
	}

	// A second unpack with the same map, and one with another map,
	// extract and copy nothing: every map mounts the same snapshots.
	b2 := filepath.Join(tmp, "bundle2")
	ovlUnmountCleanup(t, b2)
	strata(t, "unpack", "--root", store, "--driver", "overlay", "--uid-map", idmArg, "--gid-map", idmArg, ref, b2)
	b3 := filepath.Join(tmp, "bundle3")
	ovlUnmountCleanup(t, b3)
	strata(t, "unpack", "--root", store, "--driver", "overlay", "--uid-map", "0:300000:65536", ref, b3)
	if n := idmSnapshots(t, store); n != 3 {
		t.Errorf("%d snapshots after more mapped unpacks, want 3", n)
	}
	if got := idmOwner(t, filepath.Join(b3, "rootfs", "srv")); got != "300033:300033" {
		t.Errorf("second map: /srv owner %s, want 300033:300033", got)
	}
	strata(t, "umount", b2)
	strata(t, "umount", b3)

	// The same change in a vfs bundle with the same map.
	vb := filepath.Join(tmp, "vfs")
	strata(t, "unpack", "--root", filepath.Join(tmp, "vfs-store"), "--uid-map", idmArg, "--gid-map", idmArg, ref, vb)
	idmChange(t, rootfs)
	idmChange(t, filepath.Join(vb, "rootfs"))
	upper := filepath.Join(b, ".strata", "upper")
	if got := idmOwner(t, filepath.Join(upper, "home/alice/notes")); got != "100033:100033" {
		t.Errorf("upper home/alice/notes: owner %s, want the host's 100033:100033", got)
	}
	strata(t, "umount", b)
	strata(t, "commit", "--timestamp", "1700000000", b, img+":ov")
	strata(t, "commit", "--timestamp", "1700000000", vb, img+":vfs")
	hdrs, od := idmLayer(t, img, "ov")
	_, vd := idmLayer(t, img, "vfs")
	if od != vd {
		t.Errorf("overlay committed layer %s, vfs %s: the same change differs", od, vd)
	}
	for name, want := range map[string][2]int{
		"etc/created":      {0, 0},
		"home/alice/notes": {33, 33},
		"opq/made":         {1000, 1000},
		"etc":              {0, 0},
		"home/alice":       {1000, 1000},
	} {
		h := hdrs[name]
		if h == nil {
			t.Errorf("layer lacks %s", name)
			continue
		}
		if h.Uid != want[0] || h.Gid != want[1] {
			t.Errorf("layer %s: owner %d:%d, want %d:%d", name, h.Uid, h.Gid, want[0], want[1])
		}
	}
	if hdrs["etc/.wh.passwd"] == nil {
		t.Errorf("layer lacks the whiteout etc/.wh.passwd")
	}
	for name, h := range hdrs {
		if h.Uid >= 65536 || h.Gid >= 65536 {
			t.Errorf("layer %s: host owner %d:%d", name, h.Uid, h.Gid)
		}
	}
	// The committed bundle mounts on the new image, still shifted.
	strata(t, "mount", b)
	if got := idmOwner(t, filepath.Join(rootfs, "home/alice/notes")); got != "100033:100033" {
		t.Errorf("after commit: /home/alice/notes owner %s, want 100033:100033", got)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/passwd")); err == nil {
		t.Errorf("after commit: /etc/passwd is back")
	}
	// runc in the user namespace of the map sees the image's IDs, the
	// committed ones too.
	spec, err := os.ReadFile(filepath.Join(b, "config.json"))
	cmtMust(t, err)
	if !strings.Contains(string(spec), `"hostID": 100000`) || !strings.Contains(string(spec), `"type": "user"`) {
		t.Fatalf("config.json has no user namespace with the map:\n%s", spec)
	}
	cmtSetProcess(t, b, []string{"/bin/sh", "-c", "id -u; id -g; /bin/busybox stat -c '%u:%g %n' /srv /home/alice/notes /etc/motd /etc/created; " +
		"echo ctr > /srv/from-ctr && /bin/busybox chown 33:1000 /srv/from-ctr && " +
		"/bin/busybox rm -r /usr/lib && /bin/busybox mkdir /usr/lib && /bin/busybox rm /app"})
	id := fmt.Sprintf("strata-idm-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("runc", "delete", "--force", id).Run() })
	r := runCmd(t, nil, "runc", "run", "-b", b, id)
	want := "0\n0\n33:33 /srv\n33:33 /home/alice/notes\n0:10 /etc/motd\n0:0 /etc/created\n"
	if r.Code != 0 || r.Stdout != want {
		t.Fatalf("runc run: exit %d, stdout %q, want %q; stderr %s", r.Code, r.Stdout, want, r.Stderr)
	}
	// What the container wrote is stored under host IDs and committed
	// under the image's.
	if got := idmOwner(t, filepath.Join(upper, "srv/from-ctr")); got != "100033:101000" {
		t.Errorf("upper srv/from-ctr: owner %s, want 100033:101000", got)
	}
	strata(t, "umount", b)
	strata(t, "commit", b, img+":ran")
	hdrs, _ = idmLayer(t, img, "ran")
	if h := hdrs["srv/from-ctr"]; h == nil || h.Uid != 33 || h.Gid != 1000 {
		t.Errorf("layer of the run: srv/from-ctr %+v, want owner 33:1000", h)
	}
	// A directory the container replaced is opaque, a deleted file a
	// whiteout, both owned as the image owns them.
	if h := hdrs["usr/lib"]; h == nil || h.Uid != 0 || h.Gid != 0 || hdrs["usr/lib/.wh..wh..opq"] == nil {
		t.Errorf("layer of the run: usr/lib %+v, opaque marker %v", h, hdrs["usr/lib/.wh..wh..opq"] != nil)
	}
	if hdrs[".wh.app"] == nil {
		t.Errorf("layer of the run lacks the whiteout .wh.app")
	}
}

// TestOverlayIDMapErrors: invalid maps are usage errors naming the flag;
// an image owner the map lacks fails the unpack and leaves nothing.
func TestOverlayIDMapErrors(t *testing.T) {
	needRoot(t)
	ref := ovlStandardImage(t)
	tmp := t.TempDir()
	store := filepath.Join(tmp, "store")
	b := filepath.Join(tmp, "b")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--uid-map", "0:100000"}, 2, "--uid-map"},
		{[]string{"--gid-map", "0:100000:0"}, 2, "--gid-map"},
		{[]string{"--uid-map", "0:100000:65536", "--uid-map", "1000:300000:10"}, 2, "--uid-map: invalid id map"},
		{[]string{"--uid-map", "0:100000:10", "--gid-map", "0:100000:65536", "--gid-map", "70000:100005:10"}, 2, "--gid-map: invalid id map"},
		{[]string{"--uid-map", "0:100000:1000"}, 1, "/home/alice is owned by 1000:1000"},
	} {
		args := append([]string{"unpack", "--root", store, "--driver", "overlay"}, tc.args...)
		r := strataFail(t, append(args, ref, b)...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.want) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("unpack %v: exit %d, %q; want exit %d naming %q", tc.args, r.Code, r.Stderr, tc.code, tc.want)
		}
		if _, err := os.Lstat(b); err == nil {
			t.Errorf("unpack %v left the bundle directory", tc.args)
		}
	}
	// Idmapped mounts need root: an unprivileged user is told so before
	// anything is written.
	needTool(t, "setpriv")
	r := runCmd(t, nil, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", strataBin, "--quiet",
		"unpack", "--root", store, "--driver", "overlay", "--uid-map", idmArg, ref, b)
	if r.Code != 1 || !strings.Contains(r.Stderr, "--uid-map/--gid-map with --driver overlay") || !strings.Contains(r.Stderr, "needs root") {
		t.Errorf("unprivileged mapped overlay unpack: exit %d, %q", r.Code, r.Stderr)
	}
	if _, err := os.Lstat(b); err == nil {
		t.Errorf("unprivileged unpack left the bundle directory")
	}
}
