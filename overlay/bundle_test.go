package overlay_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
)

var (
	needRoot      = layertest.NeedRoot
	lstat         = layertest.Lstat
	must          = layertest.Must
	buildStandard = layertest.BuildStandard
)

func openStore(t *testing.T) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(filepath.Join(t.TempDir(), "store"), snapshot.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func unpack(t *testing.T, s *snapshot.Store, layoutDir, bdir string, o bundle.UnpackOptions) *bundle.Record {
	t.Helper()
	l, err := layout.Open(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := bundle.Unpack(context.Background(), s, l, "v1", bdir, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// unmountLater unmounts a bdir's rootfs when the test ends.
func unmountLater(t *testing.T, bdir string) {
	t.Cleanup(func() {
		rootfs := filepath.Join(bdir, snapshot.RootfsDir)
		if ok, _ := overlay.IsMounted(rootfs); ok {
			if err := overlay.Unmount(rootfs); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// testMap shifts users by 100000 and groups by 200000, so that a swapped
// uid and gid shows.
var testMap = &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 200000, Size: 65536}}}

func wantOwner(t *testing.T, p string, uid, gid uint32) {
	t.Helper()
	st := lstat(t, p)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

// overlayBundle opens the overlay bundle dir as mount does and returns
// its driver and container; the store closes with the test.
func overlayBundle(t *testing.T, dir string) (*overlay.Driver, *snapshot.Container) {
	t.Helper()
	rec, err := bundle.ReadRecord(dir)
	must(t, err)
	s, err := snapshot.Open(rec.Store, snapshot.StoreOptions{})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	var chain []*snapshot.Info
	for _, id := range rec.Chain {
		in, err := s.Get(snapshot.Key(rec.Driver, rec.Owners) + "/" + id.Encoded())
		must(t, err)
		chain = append(chain, in)
	}
	o, err := overlay.NewDriver(s, rec.Owners, overlay.DriverOptions{ReadOnly: true})
	must(t, err)
	return o, &snapshot.Container{Dir: rec.Dir, Chain: chain, Rootless: rec.Rootless, IDMap: rec.IDMap}
}

func TestOverlayDriverRoundTrip(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img, _ := buildStandard(t)
	bdir := filepath.Join(t.TempDir(), "bundle")
	unmountLater(t, bdir)
	rec := unpack(t, s, img, bdir, bundle.UnpackOptions{Driver: overlay.Name})
	if rec.Driver != overlay.Name || len(rec.Chain) != 3 {
		t.Fatalf("record: driver %q, %d layers", rec.Driver, len(rec.Chain))
	}
	rootfs := filepath.Join(bdir, snapshot.RootfsDir)
	if ok, err := overlay.IsMounted(rootfs); !ok || err != nil {
		t.Fatalf("rootfs not mounted after unpack: %v", err)
	}
	o, c := overlayBundle(t, bdir)
	if o.Xattrs() != overlay.Trusted {
		t.Errorf("root's store uses %v xattrs", o.Xattrs())
	}
	// The rootfs's "/" shows the top layer's root, not a fresh directory.
	top, upper := lstat(t, c.Top().FS()), lstat(t, o.Upper(c))
	if top.Mode != upper.Mode || top.Uid != upper.Uid || top.Gid != upper.Gid || top.Mtim != upper.Mtim {
		t.Errorf("upper root %o %d:%d %v, top layer root %o %d:%d %v", upper.Mode, upper.Uid, upper.Gid, upper.Mtim, top.Mode, top.Uid, top.Gid, top.Mtim)
	}
	// Each snapshot holds its own layer only.
	if _, err := os.Lstat(filepath.Join(c.Top().FS(), "etc", "passwd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("top snapshot holds a base layer file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "note"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(c); err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(c); !errors.Is(err, overlay.ErrNotMounted) {
		t.Errorf("second Unmount: %v, want ErrNotMounted", err)
	}
	if err := o.Mount(c); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "note")); err != nil || string(b) != "kept" {
		t.Errorf("after remount note = %q %v", b, err)
	}
	if err := o.Mount(c); !errors.Is(err, overlay.ErrAlreadyMounted) {
		t.Errorf("second Mount: %v, want ErrAlreadyMounted", err)
	}
	// Another overlay on the rootfs is not the bdir's mount.
	if err := o.Unmount(c); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, d := range []string{"up", "work"} {
		must(t, os.Mkdir(filepath.Join(other, d), 0o755))
	}
	must(t, overlay.Mount(rootfs, overlay.Options{Lower: []string{c.Top().FS()}, Upper: filepath.Join(other, "up"), Work: filepath.Join(other, "work")}))
	if err := o.Mount(c); !errors.Is(err, overlay.ErrMountedElsewhere) || errors.Is(err, overlay.ErrAlreadyMounted) {
		t.Errorf("Mount over another overlay: %v, want ErrMountedElsewhere", err)
	}
	if err := o.RemoveRootfs(c); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rootfs, o.Upper(c), o.Work(c)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("RemoveRootfs left %s: %v", p, err)
		}
	}
	if err := o.Mount(c); err == nil || !strings.Contains(err.Error(), "missing overlay directory") {
		t.Errorf("Mount without upper: %v", err)
	}
}

// TestOverlayIDMapRefused: an image owner outside the map and a map the
// kernel would refuse fail the unpack, naming the problem, and leave no
// bdir; a rootless container cannot be mapped.
func TestOverlayIDMapRefused(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	for name, tc := range map[string]struct {
		m    *ids.Map
		want string
	}{
		"owner outside":    {&ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 1000}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 65536}}}, "/home/alice is owned by 1000:1000"},
		"overlapping uids": {&ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 100}, {ContainerID: 50, HostID: 300000, Size: 10}}}, "uid map: invalid id map"},
		"overlapping host": {&ids.Map{GIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 100}, {ContainerID: 1000, HostID: 100050, Size: 10}}}, "same host IDs"},
	} {
		bdir := filepath.Join(t.TempDir(), "b")
		l, err := layout.Open(img)
		must(t, err)
		_, err = bundle.Unpack(context.Background(), s, l, "v1", bdir, bundle.UnpackOptions{Driver: overlay.Name, IDMap: tc.m})
		l.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: unpack error %v, want %q", name, err, tc.want)
		}
		if _, err := os.Lstat(bdir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: failed unpack left the bundle: %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), snapshot.TmpDir)); len(ents) != 0 {
		t.Errorf("store tmp/ holds %d leftovers", len(ents))
	}

	o, err := overlay.NewDriver(s, s.Options().Owners(), overlay.DriverOptions{Check: overlay.Check})
	must(t, err)
	infos, err := s.List()
	must(t, err)
	c := &snapshot.Container{Dir: t.TempDir(), Chain: infos[:1], Rootless: true, IDMap: testMap}
	if err := o.CreateRootfs(context.Background(), c); !errors.Is(err, overlay.ErrIDMapNeedsRoot) {
		t.Errorf("rootless CreateRootfs with a map: %v, want ErrIDMapNeedsRoot", err)
	}
	if _, err := os.Lstat(c.State()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused CreateRootfs left state behind: %v", err)
	}
}

// TestOverlayIDMapAttached mounts a mapped bdir the way kernels before
// 6.15 need (the idmapped layers attached for the time of the mount):
// the rootfs is the same, and no mount point is left, also after a
// mount killed half-way.
func TestOverlayIDMapAttached(t *testing.T) {
	needRoot(t)
	t.Cleanup(overlay.SetDetachedLayers(func() bool { return false }))
	img, _ := buildStandard(t)
	s := openStore(t)
	b := filepath.Join(t.TempDir(), "b")
	unmountLater(t, b)
	unpack(t, s, img, b, bundle.UnpackOptions{Driver: overlay.Name, IDMap: testMap})
	r := filepath.Join(b, snapshot.RootfsDir)
	attach := filepath.Join(b, snapshot.BundleState, overlay.IDMapDir)
	wantOwner(t, filepath.Join(r, "srv"), 100033, 200033)
	wantOwner(t, filepath.Join(r, "home/alice/notes"), 101000, 201000)
	if _, err := os.Lstat(attach); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left after the mount: %v", attach, err)
	}
	if mountedUnder(t, attach) {
		t.Errorf("an idmapped layer is still mounted under %s", attach)
	}
	// What a killed mount leaves: clones attached under idmap/.
	o, c := overlayBundle(t, b)
	must(t, o.Unmount(c))
	low, err := o.Lowers(c.Top())
	must(t, err)
	mounts, err := overlay.IDMappedLayers(low, c.IDMap)
	must(t, err)
	if _, _, err := mounts.Attach(attach); err != nil {
		t.Fatal(err)
	}
	mounts.Close()
	must(t, o.Mount(c))
	wantOwner(t, filepath.Join(r, "srv"), 100033, 200033)
	if mountedUnder(t, attach) {
		t.Errorf("leftover idmapped layers still mounted under %s", attach)
	}
	// The snapshots are whole.
	top, err := s.Get(c.Top().ID)
	must(t, err)
	wantOwner(t, filepath.Join(top.FS(), "srv"), 33, 33)
	if n, err := countFiles(top.FS()); err != nil || n == 0 {
		t.Errorf("top snapshot holds %d files (%v)", n, err)
	}
}

func countFiles(dir string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(string, os.DirEntry, error) error { n++; return nil })
	return n, err
}

// mountedUnder says whether a mount point lies under dir.
func mountedUnder(t *testing.T, dir string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			return true
		}
	}
	return false
}
