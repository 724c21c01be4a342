package tests

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/strata-oci/strata/overlay"
	snapbundle "github.com/strata-oci/strata/snapshot/bundle"
	lt "github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// ovlDiffTrees reports every path whose description differs.
func ovlDiffTrees(t testing.TB, nameA string, a map[string]string, nameB string, b map[string]string) {
	t.Helper()
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	bad := 0
	for _, k := range keys {
		if a[k] != b[k] {
			bad++
			if bad <= 20 {
				t.Errorf("%s:\n  %s: %q\n  %s: %q", k, nameA, a[k], nameB, b[k])
			}
		}
	}
	if bad > 20 {
		t.Errorf("... %d paths differ in all", bad)
	}
}

// ovlUnmountCleanup unmounts a bundle's rootfs when the test ends, even
// if the test failed half-way.
func ovlUnmountCleanup(t testing.TB, bundle string) {
	t.Cleanup(func() {
		rootfs := filepath.Join(bundle, "rootfs")
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

// ovlStandardImage writes layertest's standard three-layer image (with
// busybox) to a new layout and returns LAYOUT:v1.
func ovlStandardImage(t testing.TB) string {
	t.Helper()
	bb, err := os.ReadFile(needTool(t, "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "img")
	if err := lt.BuildImage(dir, "v1", lt.Image{Layers: lt.Standard(bb), Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	return dir + ":v1"
}

func ovlRecord(t testing.TB, bundle string) snapbundle.Record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, snapbundle.RecordFile))
	if err != nil {
		t.Fatal(err)
	}
	var rec snapbundle.Record
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// ovlMountOptions returns the mount options of the mount at target.
func ovlMountOptions(t testing.TB, target string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 5 && fields[4] == target {
			return sc.Text()
		}
	}
	t.Fatalf("%s is not in /proc/self/mountinfo", target)
	return ""
}

// TestOverlayMatchesVFSAndUmoci unpacks the standard image (every entry
// type, whiteouts, opaque directories, hardlinks across layers) with the
// overlay driver and checks that the mounted rootfs is the tree the vfs
// driver and umoci unpack make.
func TestOverlayMatchesVFSAndUmoci(t *testing.T) {
	needRoot(t)
	ref := ovlStandardImage(t)
	tmp := t.TempDir()
	ob := filepath.Join(tmp, "overlay")
	ovlUnmountCleanup(t, ob)
	strata(t, "unpack", "--root", filepath.Join(tmp, "store-overlay"), "--driver", "overlay", ref, ob)
	vb := filepath.Join(tmp, "vfs")
	strata(t, "unpack", "--root", filepath.Join(tmp, "store-vfs"), "--driver", "vfs", ref, vb)
	ub := filepath.Join(tmp, "umoci")
	mustRun(t, "umoci", "unpack", "--image", ref, ub)

	if rec := ovlRecord(t, ob); rec.Driver != "overlay" || len(rec.Chain) != 3 {
		t.Fatalf("overlay bundle record: driver %q, %d layers", rec.Driver, len(rec.Chain))
	}
	info := ovlMountOptions(t, filepath.Join(ob, "rootfs"))
	for _, want := range []string{" overlay ", "redirect_dir=nofollow", "upperdir=" + filepath.Join(ob, ".strata", "upper")} {
		if !strings.Contains(info, want) {
			t.Errorf("mount lacks %q: %s", want, info)
		}
	}
	if strings.Contains(info, "metacopy=on") {
		t.Errorf("mounted with metacopy: %s", info)
	}

	ot := cmtTree(t, filepath.Join(ob, "rootfs"), false)
	if len(ot) < 40 || !strings.Contains(ot["dev/null"], "dev=1:3") || !strings.Contains(ot["usr/bin/ping"], "security.capability=") ||
		!strings.Contains(ot["home/alice/notes"], "owner=1000:1000") {
		t.Fatalf("overlay rootfs is not the standard image (%d paths): dev/null %q, usr/bin/ping %q", len(ot), ot["dev/null"], ot["usr/bin/ping"])
	}
	ovlDiffTrees(t, "overlay", ot, "vfs", cmtTree(t, filepath.Join(vb, "rootfs"), false))
	ovlDiffTrees(t, "overlay", ot, "umoci", cmtTree(t, filepath.Join(ub, "rootfs"), false))
	for _, gone := range []string{"gone-file", "gone-dir", "opq/lower", "opq/sub", "usr/share-note"} {
		if _, ok := ot[gone]; ok {
			t.Errorf("%s is visible through the overlay", gone)
		}
	}
}

// TestOverlayRunc runs a container on the overlay rootfs: writes land in
// the upper directory, the layers stay untouched.
func TestOverlayRunc(t *testing.T) {
	needRoot(t)
	needTool(t, "runc")
	ref := ovlStandardImage(t)
	tmp := t.TempDir()
	b := filepath.Join(tmp, "bundle")
	ovlUnmountCleanup(t, b)
	store := filepath.Join(tmp, "store")
	strata(t, "unpack", "--root", store, "--driver", "overlay", ref, b)

	specPath := filepath.Join(b, "config.json")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	proc := spec["process"].(map[string]any)
	delete(proc, "rlimits") // this machine refuses setrlimit
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", "echo from-container > /hello && rm /etc/motd && cat /app"}
	raw, _ = json.Marshal(spec)
	if err := os.WriteFile(specPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// The snapshots holding etc/motd: the container's rm must not reach them.
	countMotd := func() int {
		found := 0
		filepath.WalkDir(filepath.Join(store, "snapshots"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(p, "/fs/etc/motd") && d.Type().IsRegular() {
				found++
			}
			return nil
		})
		return found
	}
	before := countMotd()
	id := fmt.Sprintf("strata-ovl-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("runc", "delete", "--force", id).Run() })
	r := runCmd(t, nil, "runc", "run", "-b", b, id)
	if r.Code != 0 || r.Stdout != "run me" {
		t.Fatalf("runc run: exit %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
	}
	upper := filepath.Join(b, ".strata", "upper")
	if got, err := os.ReadFile(filepath.Join(upper, "hello")); err != nil || string(got) != "from-container\n" {
		t.Errorf("upper/hello = %q %v", got, err)
	}
	if fi, err := os.Lstat(filepath.Join(upper, "etc", "motd")); err != nil || !overlay.IsWhiteout(fi) {
		t.Errorf("upper/etc/motd is not a whiteout: %v", err)
	}
	// Every snapshot that held etc/motd still has it.
	if after := countMotd(); after != before || after == 0 {
		t.Errorf("etc/motd found in %d snapshots after the run, %d before (layers must stay untouched)", after, before)
	}
}

// TestOverlayMountUmount round-trips a bundle through umount and mount:
// changes survive, state errors are clear.
func TestOverlayMountUmount(t *testing.T) {
	needRoot(t)
	ref := ovlStandardImage(t)
	tmp := t.TempDir()
	b := filepath.Join(tmp, "bundle")
	ovlUnmountCleanup(t, b)
	store := filepath.Join(tmp, "store")
	strata(t, "unpack", "--root", store, "--driver", "overlay", ref, b)
	rootfs := filepath.Join(b, "rootfs")
	if err := os.WriteFile(filepath.Join(rootfs, "kept"), []byte("change"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(rootfs, "app")); err != nil {
		t.Fatal(err)
	}
	before := cmtTree(t, rootfs, false)

	strata(t, "umount", b)
	if ents, _ := os.ReadDir(rootfs); len(ents) != 0 {
		t.Fatalf("rootfs still shows %d entries after umount", len(ents))
	}
	if _, err := os.Stat(filepath.Join(b, ".strata", "upper", "kept")); err != nil {
		t.Fatalf("umount lost the upper directory: %v", err)
	}
	// Scripts call umount and mount twice: the second does nothing and
	// says so, with exit status 0.
	r := runCmd(t, nil, strataBin, "umount", b)
	if r.Code != 0 || !strings.Contains(r.Stderr, "is not mounted") || strings.Contains(r.Stderr, "error") {
		t.Errorf("second umount: exit %d, %q", r.Code, r.Stderr)
	}
	// What a command sees through a temporary mount, which goes away.
	out := strata(t, "mount", b, "--", "sh", "-c", `cat "$STRATA_ROOTFS/kept"; test ! -e "$STRATA_ROOTFS/app"`)
	if out != "change" {
		t.Errorf("mount -- cat: %q", out)
	}
	if ok, _ := overlay.IsMounted(rootfs); ok {
		t.Errorf("mount -- CMD left the rootfs mounted")
	}
	r = runCmd(t, nil, strataBin, "--quiet", "mount", b, "--", "sh", "-c", "exit 7")
	if r.Code != 7 {
		t.Errorf("mount -- sh -c 'exit 7': exit %d, want 7 (%s)", r.Code, r.Stderr)
	}

	strata(t, "mount", b)
	ovlDiffTrees(t, "before", before, "remounted", cmtTree(t, rootfs, false))
	r = runCmd(t, nil, strataBin, "mount", b)
	if r.Code != 0 || !strings.Contains(r.Stderr, "mounted already") || strings.Contains(r.Stderr, "error") {
		t.Errorf("second mount: exit %d, %q", r.Code, r.Stderr)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Count(string(mi), " "+rootfs+" ") != 1 {
		t.Errorf("the rootfs is not mounted exactly once after a second mount:\n%s", mi)
	}
	ovlDiffTrees(t, "before", before, "after a second mount", cmtTree(t, rootfs, false))
	// With the rootfs mounted, mount -- CMD uses it and leaves it.
	strata(t, "mount", b, "--", "test", "-f", filepath.Join(rootfs, "kept"))
	if ok, _ := overlay.IsMounted(rootfs); !ok {
		t.Errorf("mount -- CMD unmounted a rootfs it did not mount")
	}
	strata(t, "umount", b)

	// A vfs bundle has nothing to mount; a plain directory is no bundle.
	vb := filepath.Join(tmp, "vfs")
	strata(t, "unpack", "--root", filepath.Join(tmp, "store-vfs"), ref, vb)
	for _, args := range [][]string{{"mount", vb}, {"umount", vb}} {
		r := strataFail(t, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "does not use the overlay driver") {
			t.Errorf("strata %v: exit %d, %q", args, r.Code, r.Stderr)
		}
	}
	r = strataFail(t, "mount", tmp)
	if r.Code != 1 || !strings.Contains(r.Stderr, "not a strata bundle") {
		t.Errorf("mount of a non-bundle: exit %d, %q", r.Code, r.Stderr)
	}
	r = strataFail(t, "mount", b, "extra")
	if r.Code != 2 {
		t.Errorf("mount with two arguments: exit %d, %q", r.Code, r.Stderr)
	}
}

// TestOverlaySharedLayers unpacks a second image that shares the first
// one's layers: only its own layer is extracted.
func TestOverlaySharedLayers(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	layers := lt.Standard(nil)
	img := filepath.Join(tmp, "img")
	if err := lt.BuildImage(img, "base", lt.Image{Layers: layers}); err != nil {
		t.Fatal(err)
	}
	extra := lt.Tar(lt.File("extra", "more", 0o644), lt.Whiteout("app"))
	if err := lt.BuildImage(img, "child", lt.Image{Layers: append(append([][]byte{}, layers...), extra)}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(tmp, "store")
	b1, b2 := filepath.Join(tmp, "b1"), filepath.Join(tmp, "b2")
	ovlUnmountCleanup(t, b1)
	ovlUnmountCleanup(t, b2)
	strata(t, "unpack", "--root", store, "--driver", "overlay", img+":base", b1)
	r := runCmd(t, nil, strataBin, "unpack", "--root", store, "--driver", "overlay", img+":child", b2)
	if r.Code != 0 {
		t.Fatalf("unpack child: %s", r.Stderr)
	}
	if n := strings.Count(r.Stderr, "extracting layer"); n != 1 {
		t.Errorf("second image extracted %d layers, want 1:\n%s", n, r.Stderr)
	}
	snaps, err := filepath.Glob(filepath.Join(store, "snapshots", "*", "*", "meta.json"))
	if err != nil || len(snaps) != 4 {
		t.Errorf("store holds %d snapshots (%v), want 4", len(snaps), err)
	}
	if _, err := os.Stat(filepath.Join(b2, "rootfs", "extra")); err != nil {
		t.Errorf("child rootfs lacks its own layer: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(b2, "rootfs", "app")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("child's whiteout of app: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b1, "rootfs", "app")); err != nil {
		t.Errorf("base rootfs lost app: %v", err)
	}
}

// TestOverlayManyLayers mounts an image of 120 layers from a store whose
// path is long: the layer list is far beyond mount(2)'s one page.
func TestOverlayManyLayers(t *testing.T) {
	needRoot(t)
	const n = 120
	tmp := t.TempDir()
	var layers [][]byte
	for i := 0; i < n; i++ {
		ents := []lt.Entry{lt.File(fmt.Sprintf("f%03d", i), fmt.Sprint(i), 0o644), lt.File("top", fmt.Sprint(i), 0o644)}
		if i == n-1 {
			ents = append(ents, lt.Whiteout("f000"))
		}
		layers = append(layers, lt.Tar(ents...))
	}
	img := filepath.Join(tmp, "img")
	if err := lt.BuildImage(img, "v1", lt.Image{Layers: layers}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(tmp, strings.Repeat("a-long-store-directory-name/", 8), "store")
	b := filepath.Join(tmp, "bundle")
	ovlUnmountCleanup(t, b)
	strata(t, "unpack", "--root", store, "--driver", "overlay", img+":v1", b)
	ents, err := os.ReadDir(filepath.Join(b, "rootfs"))
	if err != nil || len(ents) != n {
		t.Fatalf("rootfs has %d entries (%v), want %d", len(ents), err, n)
	}
	if got, _ := os.ReadFile(filepath.Join(b, "rootfs", "top")); string(got) != fmt.Sprint(n-1) {
		t.Errorf("top = %q, want the top layer's", got)
	}
	if _, err := os.Lstat(filepath.Join(b, "rootfs", "f000")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("f000 not whited out: %v", err)
	}
	strata(t, "umount", b)
	strata(t, "mount", b)
}

// TestOverlayFallback: where overlay cannot work, unpack --driver overlay
// says why and makes a vfs bundle.
func TestOverlayFallback(t *testing.T) {
	needRoot(t)
	ref := ovlStandardImage(t)
	tmp := t.TempDir()

	// A store inside an overlay mount: overlayfs refuses whiteout devices.
	parts := map[string]string{}
	for _, d := range []string{"l1", "l2", "u", "w", "m"} {
		parts[d] = filepath.Join(tmp, "outer", d)
		if err := os.MkdirAll(parts[d], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := overlay.Mount(parts["m"], overlay.Options{Lower: []string{parts["l1"], parts["l2"]}, Upper: parts["u"], Work: parts["w"]}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = overlay.Unmount(parts["m"]) })

	tests := []struct {
		name  string
		env   []string
		store string
		why   string
	}{
		{"store on overlayfs", nil, filepath.Join(parts["m"], "store"), "whiteout"},
		{"disabled by environment", []string{"STRATA_OVERLAY=off"}, filepath.Join(tmp, "store"), "STRATA_OVERLAY=off"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := filepath.Join(tmp, fmt.Sprintf("bundle%d", i))
			ovlUnmountCleanup(t, b)
			cmd := exec.Command(strataBin, "--quiet", "unpack", "--root", tc.store, "--driver", "overlay", ref, b)
			cmd.Env = append(os.Environ(), tc.env...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("unpack: %v\n%s", err, out)
			}
			msg := string(out)
			if !strings.Contains(msg, "overlay unavailable") || !strings.Contains(msg, "falling back to the vfs driver") || !strings.Contains(msg, tc.why) {
				t.Errorf("fallback message %q lacks the reason %q", msg, tc.why)
			}
			if rec := ovlRecord(t, b); rec.Driver != "vfs" {
				t.Errorf("bundle driver %q, want vfs", rec.Driver)
			}
			if ok, _ := overlay.IsMounted(filepath.Join(b, "rootfs")); ok {
				t.Errorf("fallback bundle is mounted")
			}
			if _, err := os.Stat(filepath.Join(b, "rootfs", "etc", "passwd")); err != nil {
				t.Errorf("fallback rootfs: %v", err)
			}
		})
	}
}

// ovlIsWhiteoutAt says whether p is a 0:0 character device.
func ovlIsWhiteoutAt(p string) bool {
	fi, err := os.Lstat(p)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

// TestOverlayMountInterrupted: a signal to strata mount -- CMD reaches
// CMD, and strata still unmounts.
func TestOverlayMountInterrupted(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	img := filepath.Join(tmp, "img")
	if err := lt.BuildImage(img, "v1", lt.Image{Layers: [][]byte{lt.Tar(lt.File("f", "x", 0o644))}}); err != nil {
		t.Fatal(err)
	}
	b := filepath.Join(tmp, "bundle")
	ovlUnmountCleanup(t, b)
	strata(t, "unpack", "--root", filepath.Join(tmp, "store"), "--driver", "overlay", img+":v1", b)
	strata(t, "umount", b)
	ready := filepath.Join(tmp, "ready")
	cmd := exec.Command(strataBin, "--quiet", "mount", b, "--", "sh", "-c", `touch "$0"; exec sleep 600`, ready)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait for the command to run (it creates the file once mounted).
	for waiting := true; waiting; {
		select {
		case err := <-done:
			t.Fatalf("strata mount exited early: %v: %s", err, stderr.String())
		default:
		}
		if _, err := os.Stat(ready); err == nil {
			waiting = false
		} else {
			unix.Nanosleep(&unix.Timespec{Nsec: 20e6}, nil)
		}
	}
	if ok, _ := overlay.IsMounted(filepath.Join(b, "rootfs")); !ok {
		t.Fatal("rootfs not mounted while the command runs")
	}
	if err := cmd.Process.Signal(unix.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(unix.SIGTERM) {
		t.Errorf("strata mount after SIGTERM: %v (%s), want exit %d", err, stderr.String(), 128+int(unix.SIGTERM))
	}
	if ok, _ := overlay.IsMounted(filepath.Join(b, "rootfs")); ok {
		t.Errorf("the rootfs stayed mounted after the interrupted command")
	}
}
