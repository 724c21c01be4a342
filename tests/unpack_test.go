package tests

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/internal/fsx"
	snapbundle "github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// standardImage builds the layertest standard image (every entry type,
// whiteouts, opaque directories, hardlinks into lower layers) with
// busybox from busybox-static, tagged v1, and returns the layout.
func standardImage(t *testing.T, cmd ...string) string {
	t.Helper()
	return standardImageIn(t, filepath.Join(t.TempDir(), "layout"), cmd...)
}

func standardImageIn(t *testing.T, dir string, cmd ...string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required by this test: %v", err)
	}
	if len(cmd) == 0 {
		cmd = []string{"/bin/sh"}
	}
	if err := layertest.BuildImage(dir, "v1", layertest.Image{
		Layers: layertest.Standard(bb), Cmd: cmd, Env: []string{"GREETING=hello from the image"}, WorkingDir: "/home",
	}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// treeState describes every file under root, one line each: name, type,
// mode, owner, xattrs, link target, content hash, and (for non
// directories) mtime.
func treeState(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s type=%o mode=%o owner=%d:%d", rel, st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha=%x nlink=%d", len(b), sha256.Sum256(b), st.Nlink)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " link=" + l
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			line += fmt.Sprintf(" mtime=%d", st.Mtim.Nano())
		}
		if sz, _ := unix.Llistxattr(p, nil); sz > 0 {
			buf := make([]byte, sz)
			sz, _ = unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
			sort.Strings(names)
			for _, n := range names {
				v := make([]byte, 4096)
				vn, _ := unix.Lgetxattr(p, n, v)
				line += fmt.Sprintf(" xattr:%s=%q", n, v[:max(vn, 0)])
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffLines(a, b []string) string {
	am, bm := map[string]bool{}, map[string]bool{}
	for _, l := range a {
		am[l] = true
	}
	for _, l := range b {
		bm[l] = true
	}
	var d []string
	for _, l := range a {
		if !bm[l] {
			d = append(d, "- "+l)
		}
	}
	for _, l := range b {
		if !am[l] {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}

func TestUnpackMatchesUmoci(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	img := standardImage(t)
	work := t.TempDir()
	root := filepath.Join(work, "store")
	ours := filepath.Join(work, "ours")
	theirs := filepath.Join(work, "theirs")
	strata(t, "unpack", "--root", root, img+":v1", ours)
	mustRun(t, "umoci", "unpack", "--image", img+":v1", theirs)
	a := treeState(t, filepath.Join(ours, "rootfs"))
	b := treeState(t, filepath.Join(theirs, "rootfs"))
	if d := diffLines(b, a); d != "" {
		t.Fatalf("strata's rootfs differs from umoci's (- umoci, + strata):\n%s", d)
	}
	// The snapshot rebuilds every layer byte for byte.
	out := strata(t, "snapshots", "verify", "--root", root, img+":v1")
	if n := strings.Count(out, " ok "); n != 3 {
		t.Fatalf("verify: %d layers ok, want 3:\n%s", n, out)
	}
}

// stripRlimits removes process.rlimits: this machine refuses setrlimit.
func stripRlimits(t *testing.T, bundle string) {
	t.Helper()
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["process"].(map[string]any), "rlimits")
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestUnpackRuncRun(t *testing.T) {
	needRoot(t)
	needTool(t, "runc")
	img := standardImage(t, "/bin/sh", "-c", `echo "$GREETING in $(pwd) as $(id -u)"; cat /etc/motd`)
	work := t.TempDir()
	bundle := filepath.Join(work, "bundle")
	strata(t, "unpack", "--root", filepath.Join(work, "store"), img+":v1", bundle)
	var spec specs.Spec
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Process.Rlimits) == 0 {
		t.Error("config.json has no rlimits: bundles keep runc's usual defaults")
	}
	stripRlimits(t, bundle)
	id := fmt.Sprintf("strata-test-%d", os.Getpid())
	t.Cleanup(func() { _ = exec.Command("runc", "delete", "-f", id).Run() })
	cmd := exec.Command("runc", "run", "-b", bundle, id)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("runc run: %v\n%s", err, out)
	}
	want := "hello from the image in /home as 0\nlayer two\n"
	if string(out) != want {
		t.Fatalf("runc run printed %q, want %q", out, want)
	}
}

func TestSnapshotsListRemoveGC(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	root := filepath.Join(work, "store")
	b1, b2 := filepath.Join(work, "b1"), filepath.Join(work, "b2")
	strata(t, "unpack", "--root", root, img+":v1", b1)
	strata(t, "unpack", "--root", root, img+":v1", b2)
	var rows []struct {
		ID      string   `json:"id"`
		Size    int64    `json:"size"`
		Bundles []string `json:"bundles"`
	}
	if err := json.Unmarshal([]byte(strata(t, "snapshots", "--root", root, "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 {
		t.Fatalf("%d snapshots, want 3 (layers are shared)", len(rows))
	}
	for _, r := range rows {
		if r.Size <= 0 || len(r.Bundles) != 2 {
			t.Fatalf("snapshot %s: size %d, %d bundles; want a size and 2 bundles", r.ID, r.Size, len(r.Bundles))
		}
	}
	if out := strata(t, "snapshots", "--root", root); !strings.Contains(out, "SIZE") || strings.Count(out, "\n") != 4 {
		t.Fatalf("listing:\n%s", out)
	}
	// In use: refused.
	if r := strataFail(t, "snapshots", "rm", "--root", root, rows[0].ID); r.Code != 1 || !strings.Contains(r.Stderr, "in use") {
		t.Fatalf("rm of a used snapshot: exit %d, %s", r.Code, r.Stderr)
	}
	// The bundles go, the layout stays: its image keeps the snapshots.
	os.RemoveAll(b1)
	os.RemoveAll(b2)
	strata(t, "snapshots", "gc", "--root", root)
	if out := strata(t, "snapshots", "--root", root, "--json"); strings.Count(out, `"id"`) != 3 {
		t.Fatalf("gc removed snapshots an image of a known layout uses:\n%s", out)
	}
	// Explicit removal works once unused.
	strata(t, "snapshots", "rm", "--root", root, rows[0].ID[:12])
	// The layout goes: nothing uses the rest.
	os.RemoveAll(img)
	out := strata(t, "snapshots", "gc", "--root", root)
	if strings.Count(out, "removed") != 2 {
		t.Fatalf("gc output:\n%s", out)
	}
	if out := strata(t, "snapshots", "--root", root, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("snapshots left after gc:\n%s", out)
	}
}

func TestUnpackDiffIDMismatch(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "layout")
	layers := layertest.Standard(nil)
	if err := layertest.BuildImage(dir, "v1", layertest.Image{Layers: layers[:1], DiffIDs: []digest.Digest{layertest.DiffID(layers[1])}}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	root := filepath.Join(work, "store")
	bundle := filepath.Join(work, "b")
	r := strataFail(t, "unpack", "--root", root, dir+":v1", bundle)
	if !strings.Contains(r.Stderr, "diffID") {
		t.Fatalf("stderr: %s", r.Stderr)
	}
	if out := strata(t, "snapshots", "--root", root, "--json"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("a snapshot was left:\n%s", out)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "tmp")); len(ents) != 0 {
		t.Fatalf("store tmp/ holds %d leftovers", len(ents))
	}
	if _, err := os.Stat(bundle); err == nil {
		t.Fatal("bundle directory left behind")
	}
}

func TestUnpackIDMap(t *testing.T) {
	needRoot(t)
	img := standardImage(t)
	work := t.TempDir()
	bundle := filepath.Join(work, "b")
	strata(t, "unpack", "--root", filepath.Join(work, "store"), "--uid-map", "0:100000:65536", "--gid-map", "0:200000:65536", img+":v1", bundle)
	for p, want := range map[string][2]uint32{
		"rootfs/home/alice/notes": {101000, 201000},
		"rootfs/etc/motd":         {100000, 200010},
		"rootfs/srv/link":         {100033, 200033},
		"rootfs":                  {100000, 200000},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(bundle, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, want[0], want[1])
		}
	}
	var spec specs.Spec
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0].HostID != 100000 || spec.Linux.GIDMappings[0].HostID != 200000 {
		t.Fatalf("mappings: %+v %+v", spec.Linux.UIDMappings, spec.Linux.GIDMappings)
	}
	var rec snapbundle.Record
	b, _ = os.ReadFile(filepath.Join(bundle, snapbundle.RecordFile))
	if err := json.Unmarshal(b, &rec); err != nil || rec.IDMap == nil {
		t.Fatalf("record: %s (%v)", b, err)
	}
}

// TestUnpackRootless runs strata as an unprivileged user (nobody) with no
// user namespace: owners go to user.rootlesscontainers, devices become
// empty files, the spec is rootless, and snapshots still verify.
func TestUnpackRootless(t *testing.T) {
	needRoot(t)
	needTool(t, "setpriv")
	work := worldWritableTempDir(t)
	img := standardImageIn(t, filepath.Join(work, "layout"))
	// The layout belongs to the unprivileged user, as a user's own
	// layouts do (opening one takes its lock files).
	filepath.WalkDir(img, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			os.Lchown(p, 65534, 65534)
		}
		return nil
	})
	asNobody := func(args ...string) result {
		full := append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", strataBin, "--quiet"}, args...)
		return runCmd(t, nil, "setpriv", full...)
	}
	root := filepath.Join(work, "store")
	bundle := filepath.Join(work, "b")
	t.Cleanup(func() { fsx.RemoveAll(root); fsx.RemoveAll(bundle) })
	if r := asNobody("unpack", "--root", root, img+":v1", bundle); r.Code != 0 {
		t.Fatalf("rootless unpack: exit %d: %s", r.Code, r.Stderr)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(rootfs, "home/alice/notes"), layer.RootlessXattr, buf)
	if err != nil {
		t.Fatalf("home/alice/notes: %v", err)
	}
	if uid, gid, err := layer.DecodeRootless(buf[:n]); err != nil || uid != 1000 || gid != 1000 {
		t.Fatalf("rootless owner %d:%d (%v), want 1000:1000", uid, gid, err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(rootfs, "etc/passwd"), layer.RootlessXattr, buf); err != unix.ENODATA {
		t.Fatalf("etc/passwd (0:0) has a rootless xattr: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(rootfs, "dev/null"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size != 0 {
		t.Fatalf("dev/null: want an empty placeholder file, got mode %o (%v)", st.Mode, err)
	}
	if err := unix.Lstat(filepath.Join(rootfs, "locked"), &st); err != nil || st.Mode&0o7777 != 0 || st.Uid != 65534 {
		t.Fatalf("locked: mode %o owner %d (%v), want 0000 owned by nobody", st.Mode&0o7777, st.Uid, err)
	}
	var spec specs.Spec
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	hasUserNS := false
	for _, ns := range spec.Linux.Namespaces {
		hasUserNS = hasUserNS || ns.Type == specs.UserNamespace
	}
	if !hasUserNS || len(spec.Linux.UIDMappings) != 1 || spec.Linux.UIDMappings[0].HostID != 65534 {
		t.Fatalf("not a rootless spec: %+v", spec.Linux)
	}
	if r := asNobody("snapshots", "verify", "--root", root, img+":v1"); r.Code != 0 || strings.Count(r.Stdout, " ok ") != 3 {
		t.Fatalf("rootless verify: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := asNobody("snapshots", "gc", "--root", root); r.Code != 0 {
		t.Fatalf("rootless gc: %s", r.Stderr)
	}
}

// hostTar archives paths of this machine with GNU tar in the given format.
func hostTar(t *testing.T, format string, paths ...string) []byte {
	t.Helper()
	needTool(t, "tar")
	args := append([]string{"--format=" + format, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", "/", "-cf", "-"}, paths...)
	r := runCmd(t, nil, "tar", args...)
	// Exit 1 means a file changed while it was read: the archive is
	// still a valid one.
	if r.Code > 1 {
		t.Fatalf("tar %v: exit %d: %s", paths, r.Code, r.Stderr)
	}
	return []byte(r.Stdout)
}

// TestUnpackHostTreeMatchesUmoci unpacks layers made by GNU tar (gnu and
// pax formats) from real trees of this machine, thousands of files with
// hardlinks, then deletes and hides parts of them in a third layer.
func TestUnpackHostTreeMatchesUmoci(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	l1 := hostTar(t, "gnu", "etc")
	l2 := hostTar(t, "pax", "usr/share/zoneinfo")
	l3 := layertest.Tar(
		layertest.Whiteout("etc/apt"),
		layertest.Opaque("usr/share/zoneinfo/posix"),
		layertest.File("usr/share/zoneinfo/posix/UTC", "replaced", 0o644),
		layertest.Hardlink("etc/zone-link", "usr/share/zoneinfo/Etc/UTC"),
		layertest.Dir("etc/hostname", 0o755),
	)
	img := filepath.Join(t.TempDir(), "layout")
	if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: [][]byte{l1, l2, l3}, Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	root := filepath.Join(work, "store")
	strata(t, "unpack", "--root", root, img+":v1", filepath.Join(work, "ours"))
	mustRun(t, "umoci", "unpack", "--image", img+":v1", filepath.Join(work, "theirs"))
	a := treeState(t, filepath.Join(work, "ours", "rootfs"))
	b := treeState(t, filepath.Join(work, "theirs", "rootfs"))
	if d := diffLines(b, a); d != "" {
		t.Fatalf("strata's rootfs differs from umoci's (- umoci, + strata):\n%s", d)
	}
	if len(a) < 2000 {
		t.Fatalf("only %d files unpacked", len(a))
	}
	if out := strata(t, "snapshots", "verify", "--root", root, img+":v1"); strings.Count(out, " ok ") != 3 {
		t.Fatalf("verify:\n%s", out)
	}
}

// worldWritableTempDir is a t.TempDir that any user can write to and
// reach (its parents opened for search), for tests that run strata as
// an unprivileged user.
func worldWritableTempDir(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	for d := work; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(work, 0o777); err != nil {
		t.Fatal(err)
	}
	return work
}
