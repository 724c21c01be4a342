package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// storeRow is a line of strata snapshots --json.
type storeRow struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Driver     string   `json:"driver"`
	OwnersKind string   `json:"ownersKind"`
	Bundles    []string `json:"bundles"`
}

func storeRows(t testing.TB, root string) []storeRow {
	t.Helper()
	var rows []storeRow
	if err := json.Unmarshal([]byte(strata(t, "--root", root, "snapshots", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// byDriver counts rows by driver.
func byDriver(rows []storeRow) map[string]int {
	m := map[string]int{}
	for _, r := range rows {
		m[r.Driver]++
	}
	return m
}

// TestStoreBothDrivers: one image unpacked with vfs and with overlay into
// one store keeps both drivers' snapshots side by side; the listing names
// them, verify and rm see both, and gc keeps each bundle's own.
func TestStoreBothDrivers(t *testing.T) {
	needRoot(t)
	img := ovlStandardImage(t)
	layoutDir := strings.TrimSuffix(img, ":v1")
	work := t.TempDir()
	root := filepath.Join(work, "store")
	bv, bo := filepath.Join(work, "vfs"), filepath.Join(work, "overlay")
	ovlUnmountCleanup(t, bo)
	strata(t, "--root", root, "unpack", img, bv)
	if r := runCmd(t, nil, strataBin, "--root", root, "unpack", "--driver", "overlay", img, bo); r.Code != 0 || strings.Contains(r.Stderr, "falling back") {
		t.Fatalf("overlay unpack beside vfs: exit %d: %s", r.Code, r.Stderr)
	}
	for _, b := range []string{bv, bo} {
		if got, err := os.ReadFile(filepath.Join(b, "rootfs", "etc", "motd")); err != nil || len(got) == 0 {
			t.Errorf("%s: etc/motd %q %v", b, got, err)
		}
	}
	rows := storeRows(t, root)
	if n := byDriver(rows); n["vfs"] != 3 || n["overlay"] != 3 {
		t.Fatalf("snapshots by driver %v, want 3 of each", n)
	}
	for _, r := range rows {
		if len(r.Bundles) != 1 || r.OwnersKind != "image" || r.Name != r.Driver+"/"+r.ID {
			t.Errorf("snapshot %s: %+v", r.Name, r)
		}
		if _, err := os.Stat(filepath.Join(root, "snapshots", r.Driver, r.ID, "meta.json")); err != nil {
			t.Errorf("snapshot %s is not in ROOT/snapshots/%s: %v", r.Name, r.Driver, err)
		}
	}
	if out := strata(t, "--root", root, "snapshots"); !strings.Contains(out, "OWNERS") || strings.Count(out, "\n") != 7 {
		t.Errorf("listing:\n%s", out)
	}
	if out := strata(t, "snapshots", "verify", "--root", root, img); strings.Count(out, " ok ") != 6 {
		t.Errorf("verify of both drivers' snapshots:\n%s", out)
	}
	// A chain both drivers hold is named by KEY/ID.
	r := strataFail(t, "--root", root, "snapshots", "rm", rows[0].ID)
	if r.Code != 1 || !strings.Contains(r.Stderr, "vfs/"+rows[0].ID) || !strings.Contains(r.Stderr, "overlay/"+rows[0].ID) {
		t.Errorf("rm of an ID two drivers hold: exit %d, %s", r.Code, r.Stderr)
	}
	if r := strataFail(t, "--root", root, "snapshots", "rm", "vfs/"+rows[0].ID); r.Code != 1 || !strings.Contains(r.Stderr, "in use") {
		t.Errorf("rm of a used vfs snapshot: exit %d, %s", r.Code, r.Stderr)
	}
	// Both commit onto their own driver's snapshots.
	if err := os.WriteFile(filepath.Join(bv, "rootfs", "from-vfs"), []byte("v\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bo, "rootfs", "from-overlay"), []byte("o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	strata(t, "--root", root, "commit", bv, layoutDir+":vfs2")
	strata(t, "--root", root, "commit", bo, layoutDir+":ovl2")
	if n := byDriver(storeRows(t, root)); n["vfs"] != 4 || n["overlay"] != 4 {
		t.Fatalf("after the commits: snapshots by driver %v, want 4 of each", n)
	}
	// The vfs bundle and the layout go: gc removes vfs's, keeps the
	// overlay bundle's.
	if err := os.RemoveAll(bv); err != nil {
		t.Fatal(err)
	}
	if out := strata(t, "--root", root, "snapshots", "gc"); strings.Contains(out, "removed") {
		t.Errorf("gc removed snapshots an image of a known layout uses:\n%s", out)
	}
	if err := os.RemoveAll(layoutDir); err != nil {
		t.Fatal(err)
	}
	out := strata(t, "--root", root, "snapshots", "gc")
	if strings.Count(out, "removed vfs/") != 4 || strings.Contains(out, "removed overlay/") {
		t.Errorf("gc:\n%s", out)
	}
	if n := byDriver(storeRows(t, root)); n["vfs"] != 0 || n["overlay"] != 4 {
		t.Errorf("after gc: snapshots by driver %v, want 4 overlay", n)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", "vfs")); !os.IsNotExist(err) {
		t.Errorf("the emptied vfs directory stays: %v", err)
	}
	// --root that is not the bundle's store is refused.
	if r := strataFail(t, "--root", filepath.Join(work, "other"), "umount", bo); r.Code != 2 || !strings.Contains(r.Stderr, root) {
		t.Errorf("umount with another --root: exit %d, %s", r.Code, r.Stderr)
	}
	strata(t, "--root", root, "umount", bo)
	strata(t, "mount", "--root", root, bo)
}

// oldLayout turns a store into the layout an earlier strata wrote:
// ROOT/snapshots/<hex> whatever the driver, no "owners" in meta.json or in
// bundle records. Snapshots for which keep says so stay where they are
// (a migration interrupted half way), and those for which noted says so
// keep "owners" in meta.json (interrupted between the rewrite and the
// rename). Rewritten files keep their owner.
func oldLayout(t testing.TB, root string, keep, noted func(hex string) bool) {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(root, "snapshots", "*", "*", "meta.json"))
	if err != nil || len(metas) == 0 {
		t.Fatalf("no snapshots in %s (%v)", root, err)
	}
	for _, m := range metas {
		dir := filepath.Dir(m)
		hex := filepath.Base(dir)
		if keep(hex) {
			continue
		}
		if !noted(hex) {
			dropOwners(t, m)
		}
		if err := os.Rename(dir, filepath.Join(root, "snapshots", hex)); err != nil {
			t.Fatal(err)
		}
	}
	keys, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	for _, k := range keys {
		if len(k.Name()) != 64 {
			os.Remove(filepath.Join(root, "snapshots", k.Name())) // only if emptied
		}
	}
	recs, _ := filepath.Glob(filepath.Join(root, "containers", "*.json"))
	for _, p := range recs {
		var rec struct {
			Dir string `json:"dir"`
		}
		b, err := os.ReadFile(p)
		if err != nil || json.Unmarshal(b, &rec) != nil {
			t.Fatalf("record %s: %v", p, err)
		}
		dropOwners(t, p)
		// Records of removed bundles stay until gc.
		if _, err := os.Stat(rec.Dir); err == nil {
			dropOwners(t, filepath.Join(rec.Dir, ".strata-unpack.json"))
		}
	}
}

// dropOwners removes the "owners" field of a JSON file in place (the file
// keeps its inode, so its owner).
func dropOwners(t testing.TB, p string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["owners"]; !ok {
		t.Fatalf("%s has no owners field: %s", p, b)
	}
	delete(m, "owners")
	b, _ = json.MarshalIndent(m, "", "\t")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStoreOldLayout: a store as an earlier strata laid it out (and one
// whose move to the new layout was interrupted) opens, two processes
// opening it at once both work, its bundles mount and commit, and gc
// keeps what they use.
func TestStoreOldLayout(t *testing.T) {
	needRoot(t)
	work := t.TempDir()
	layoutDir := filepath.Join(work, "img")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required by this test: %v", err)
	}
	if err := lt.BuildImage(layoutDir, "v1", lt.Image{Layers: lt.Standard(bb), Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	for tag, body := range map[string]string{"v2": "two", "v3": "three"} {
		if err := lt.BuildImage(layoutDir, tag, lt.Image{Layers: [][]byte{lt.Tar(lt.Dir("etc", 0o755), lt.File("etc/which", body, 0o644))}}); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(work, "store")
	bo, bv, b3 := filepath.Join(work, "overlay"), filepath.Join(work, "vfs"), filepath.Join(work, "three")
	ovlUnmountCleanup(t, bo)
	strata(t, "--root", root, "unpack", "--driver", "overlay", layoutDir+":v1", bo)
	strata(t, "--root", root, "unpack", layoutDir+":v2", bv)
	strata(t, "--root", root, "unpack", layoutDir+":v3", b3)
	strata(t, "umount", bo)
	// v3's snapshot is left unused: no bundle, no name.
	if err := os.RemoveAll(b3); err != nil {
		t.Fatal(err)
	}
	strata(t, "rm", layoutDir+":v3")
	rows := storeRows(t, root)
	if len(rows) != 5 {
		t.Fatalf("%d snapshots, want 5", len(rows))
	}
	var hexes []string
	for _, r := range rows {
		hexes = append(hexes, r.ID)
	}
	sort.Strings(hexes)
	// The first stays in the new layout, the second is moved but still
	// has owners in meta.json, the rest are as an earlier strata left them.
	oldLayout(t, root, func(h string) bool { return h == hexes[0] }, func(h string) bool { return h == hexes[1] })
	if ents, _ := filepath.Glob(filepath.Join(root, "snapshots", "????????????????????????????????????????????????????????????????")); len(ents) != 4 {
		t.Fatalf("%d snapshots in the old layout, want 4", len(ents))
	}

	// Two processes open it at once: one moves the snapshots, the other
	// waits for the store lock and finds them moved.
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for range 2 {
		c := exec.Command(strataBin, "--root", root, "snapshots", "--json")
		out := &strings.Builder{}
		c.Stdout, c.Stderr = out, out
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, out)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil || strings.Count(outs[i].String(), `"id"`) != 5 {
			t.Errorf("concurrent open %d: %v\n%s", i, err, outs[i].String())
		}
	}
	rows = storeRows(t, root)
	if n := byDriver(rows); n["overlay"] != 3 || n["vfs"] != 2 {
		t.Fatalf("after the move: snapshots by driver %v, want 3 overlay, 2 vfs", n)
	}
	if ents, _ := filepath.Glob(filepath.Join(root, "snapshots", "????????????????????????????????????????????????????????????????")); len(ents) != 0 {
		t.Fatalf("%d snapshots left in the old layout", len(ents))
	}
	for _, r := range rows {
		if r.OwnersKind != "image" || r.Name != r.Driver+"/"+r.ID {
			t.Errorf("moved snapshot %+v", r)
		}
	}
	if out := strata(t, "--root", root, "snapshots", "verify", layoutDir+":v1", layoutDir+":v2"); strings.Count(out, " ok ") != 4 {
		t.Errorf("verify after the move:\n%s", out)
	}

	// The old bundles mount and commit.
	strata(t, "mount", bo)
	if b, err := os.ReadFile(filepath.Join(bo, "rootfs", "etc", "motd")); err != nil || len(b) == 0 {
		t.Fatalf("old overlay bundle after the move: etc/motd %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(bo, "rootfs", "new"), []byte("n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	strata(t, "commit", bo, layoutDir+":v1c")
	if err := os.WriteFile(filepath.Join(bv, "rootfs", "etc", "which"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	strata(t, "commit", bv, layoutDir+":v2c")
	// gc: the unused v3 snapshot goes, what the bundles use stays.
	out := strata(t, "--root", root, "snapshots", "gc")
	if strings.Count(out, "removed") != 1 {
		t.Errorf("gc after the move:\n%s", out)
	}
	if n := byDriver(storeRows(t, root)); n["overlay"] != 4 || n["vfs"] != 2 {
		t.Errorf("after gc: snapshots by driver %v, want 4 overlay, 2 vfs", n)
	}
	fresh := filepath.Join(work, "fresh")
	strata(t, "--root", root, "unpack", layoutDir+":v2c", fresh)
	if b, err := os.ReadFile(filepath.Join(fresh, "rootfs", "etc", "which")); err != nil || string(b) != "changed" {
		t.Errorf("v2c unpacked: etc/which %q %v", b, err)
	}
}

// TestStoreOldRootlessLayout: an unprivileged user's store from an earlier
// strata, whose overlay layers were written with every file the user's
// and owners in the user.rootlesscontainers xattr, opens with those
// snapshots kept in that form: the old bundle works and commits as
// before, and a new unpack of the same image, which now gives the
// namespace's owners, extracts its own snapshots beside them instead of
// taking those as if they had real owners.
func TestStoreOldRootlessLayout(t *testing.T) {
	needTool(t, "unshare")
	uid, gid := rootlessAccount(t)
	dir := rootlessDir(t, uid, gid)
	img := rlImage(t, dir, uid, gid)
	store := filepath.Join(dir, "store")
	old := filepath.Join(dir, "old")
	t.Cleanup(func() { os.RemoveAll(store) })
	// A namespace that maps the user alone writes what an earlier strata
	// wrote in its own namespace: the xattr form.
	r := rlRunIn(t, dir, "runuser", "-u", rootlessUser, "--", "unshare", "-Urm", strataBin, "--quiet", "--root", store, "unpack", "--driver", "overlay", img+":v1", old)
	rlMust(t, r)
	rows := storeRows(t, store)
	if len(rows) != 2 || rows[0].OwnersKind != "xattr" {
		t.Fatalf("snapshots %+v, want 2 in the xattr form", rows)
	}
	oldLayout(t, store, func(string) bool { return false }, func(string) bool { return false })

	// The user opens it: the snapshots move, still in the xattr form.
	r = rlAsUser(t, dir, "--root", store, "snapshots", "--json")
	rlMust(t, r)
	var moved []storeRow
	if err := json.Unmarshal([]byte(r.Stdout), &moved); err != nil {
		t.Fatal(err)
	}
	if len(moved) != 2 || moved[0].OwnersKind != "xattr" || moved[1].OwnersKind != "xattr" || len(moved[0].Bundles) != 1 {
		t.Fatalf("moved snapshots %+v, want the 2 of the old bundle, xattr form", moved)
	}
	// The old bundle shows root's files as before, and the owner the
	// container gives a file is committed.
	r = rlAsUser(t, dir, "mount", old, "--", "sh", "-c", `cd "$STRATA_ROOTFS" && stat -c '%n %u:%g' ./owned && chown 1000:10 ./etc/b && echo new > ./new`)
	rlMust(t, r)
	if !strings.Contains(r.Stdout, "./owned 0:0") {
		t.Errorf("old bundle: %s", r.Stdout)
	}
	rlMust(t, rlAsUser(t, dir, "commit", old, img+":v2"))
	owners, _ := idmLayer(t, img, "v2")
	if h := owners["etc/b"]; h == nil || h.Uid != 1000 || h.Gid != 10 {
		t.Errorf("committed etc/b: %+v, want 1000:10", h)
	}
	if h := owners["new"]; h == nil || h.Uid != 0 || h.Gid != 0 {
		t.Errorf("committed new: %+v, want 0:0", h)
	}

	// A new unpack extracts the image again with the namespace's owners.
	fresh := filepath.Join(dir, "fresh")
	ovlUnmountCleanup(t, fresh)
	rlMust(t, rlAsUser(t, dir, "--root", store, "unpack", "--driver", "overlay", img+":v1", fresh))
	r = rlAsUser(t, dir, "mount", fresh, "--", "sh", "-c", `stat -c '%n %u:%g' "$STRATA_ROOTFS/owned"`)
	rlMust(t, r)
	if !strings.Contains(r.Stdout, "owned 1000:1000") {
		t.Errorf("fresh bundle: %s", r.Stdout)
	}
	kinds := map[string]int{}
	for _, row := range storeRows(t, store) {
		kinds[row.OwnersKind]++
	}
	if kinds["xattr"] != 3 || kinds["userns"] != 2 {
		t.Errorf("snapshots by form %v, want 3 xattr (the old bundle's and its commit), 2 userns", kinds)
	}
}
