package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/idmap"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/ids"
)

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

// layerHeaders reads the tar headers of a committed layer blob.
func layerHeaders(t *testing.T, layoutDir string, res *CommitResult) map[string]*tar.Header {
	t.Helper()
	l, err := layout.Open(layoutDir)
	must(t, err)
	defer l.Close()
	d := res.Layer.Descriptor
	rc, err := l.Blobs().Open(d.Digest, d.Size)
	must(t, err)
	defer rc.Close()
	dr, _, err := compression.NewSniffingReader(rc)
	must(t, err)
	defer dr.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// mappedChanges makes the same changes in a rootfs whose owners are
// shifted by testMap, as a container's root would: new files belong to
// shifted IDs.
func mappedChanges(t *testing.T, r string) {
	p := func(s string) string { return filepath.Join(r, s) }
	must(t, os.WriteFile(p("etc/new"), []byte("new\n"), 0o644))
	must(t, os.Lchown(p("etc/new"), 100000+33, 200000+33))
	must(t, os.Mkdir(p("srv/made"), 0o750))
	must(t, os.Lchown(p("srv/made"), 100000+1000, 200000+1000))
	must(t, os.Remove(p("etc/passwd")))
	must(t, os.Lchown(p("etc/group"), 100000+1000, 200000+10))
	must(t, os.WriteFile(p("opq/upper"), []byte("rewritten\n"), 0o644))
}

// TestOverlayIDMap unpacks the standard image with the overlay driver and
// an id map: the mounted owners are shifted, the snapshots are shared
// with unmapped bundles and left as they are, and a commit writes the
// image's owners, the same layer the vfs driver commits.
func TestOverlayIDMap(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	ob := filepath.Join(t.TempDir(), "overlay")
	unmountLater(t, ob)
	rec := unpack(t, s, img, ob, UnpackOptions{Driver: OverlayDriver, IDMap: testMap})
	if rec.Driver != OverlayDriver || rec.IDMap.Empty() {
		t.Fatalf("record: driver %q, map %+v", rec.Driver, rec.IDMap)
	}
	r := filepath.Join(ob, RootfsDir)
	if ok, err := overlay.IsMounted(r); !ok {
		t.Fatalf("rootfs not mounted: %v", err)
	}
	for p, want := range map[string][2]uint32{
		"":                 {100000, 200000},
		"home/alice/notes": {101000, 201000},
		"etc/motd":         {100000, 200010},
		"srv":              {100033, 200033},
		"srv/link":         {100033, 200033},
		"usr/bin/suid":     {100000, 200000},
	} {
		wantOwner(t, filepath.Join(r, p), want[0], want[1])
	}
	if st := lstat(t, filepath.Join(r, "usr/bin/suid")); st.Mode&0o7777 != 0o4755 {
		t.Errorf("usr/bin/suid mode %o, want 4755", st.Mode&0o7777)
	}
	for _, gone := range []string{"gone-file", "opq/lower", "usr/share-note"} {
		if _, err := os.Lstat(filepath.Join(r, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s visible through the mapped overlay: %v", gone, err)
		}
	}
	// The shared snapshots keep the image's IDs.
	infos, err := s.List()
	must(t, err)
	if len(infos) != 3 {
		t.Fatalf("%d snapshots, want the image's 3", len(infos))
	}
	top, err := s.Get(rec.Chain[2].Encoded())
	must(t, err)
	wantOwner(t, filepath.Join(top.FS(), "srv"), 33, 33)

	// A second bundle of the same image, mapped or not, adds nothing.
	plain := filepath.Join(t.TempDir(), "plain")
	unmountLater(t, plain)
	unpack(t, s, img, plain, UnpackOptions{Driver: OverlayDriver})
	other := filepath.Join(t.TempDir(), "other")
	unmountLater(t, other)
	unpack(t, s, img, other, UnpackOptions{Driver: OverlayDriver, IDMap: &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 300000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 300000, Size: 65536}}}})
	if again, _ := s.List(); len(again) != 3 {
		t.Errorf("%d snapshots after two more unpacks, want 3", len(again))
	}
	wantOwner(t, filepath.Join(plain, RootfsDir, "srv"), 33, 33)
	wantOwner(t, filepath.Join(other, RootfsDir, "srv"), 300033, 300033)

	// The same changes through vfs, for the layer digest.
	vs, err := Open(filepath.Join(t.TempDir(), "vfs-store"), StoreOptions{})
	must(t, err)
	defer vs.Close()
	vb := filepath.Join(t.TempDir(), "vfs")
	unpack(t, vs, img, vb, UnpackOptions{IDMap: testMap})

	mappedChanges(t, r)
	mappedChanges(t, filepath.Join(vb, RootfsDir))
	upper := filepath.Join(ob, BundleState, UpperDir)
	wantOwner(t, filepath.Join(upper, "etc/new"), 100033, 200033)

	ts := time.Unix(1700000000, 0)
	ores := commitBundle(t, ob, img, "ov", CommitOptions{Timestamp: &ts})
	vres := commitBundle(t, vb, img, "vfs", CommitOptions{Timestamp: &ts})
	if ores.Layer == nil || vres.Layer == nil {
		t.Fatal("a commit wrote no layer")
	}
	if ores.Layer.Descriptor.Digest != vres.Layer.Descriptor.Digest {
		t.Errorf("overlay layer %s, vfs layer %s: the same change differs", ores.Layer.Descriptor.Digest, vres.Layer.Descriptor.Digest)
	}
	hdrs := layerHeaders(t, img, ores)
	for name, want := range map[string][2]int{
		"etc/new":   {33, 33},
		"srv/made":  {1000, 1000},
		"etc/group": {1000, 10},
		"opq/upper": {0, 0},
		"etc":       {0, 0},
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
		t.Errorf("layer lacks the whiteout of etc/passwd: %v", hdrs)
	}
	// The bundle moved onto the new image and is mounted again, mapped.
	if ok, _ := overlay.IsMounted(r); !ok {
		t.Fatal("rootfs not mounted after the commit")
	}
	wantOwner(t, r, 100000, 200000)
	wantOwner(t, upper, 100000, 200000)
	wantOwner(t, filepath.Join(r, "etc/new"), 100033, 200033)
	wantOwner(t, filepath.Join(r, "srv/made"), 101000, 201000)
	if ents, _ := os.ReadDir(upper); len(ents) != 0 {
		t.Errorf("upper directory not fresh after the commit: %d entries", len(ents))
	}
	newTop, err := s.Get(ores.Record.Chain[len(ores.Record.Chain)-1].Encoded())
	must(t, err)
	wantOwner(t, filepath.Join(newTop.FS(), "etc/new"), 33, 33)
	// Nothing left to commit.
	if res := commitBundle(t, ob, img, "ov2", CommitOptions{Timestamp: &ts}); res.Layer != nil {
		t.Errorf("second commit wrote a layer of %d entries", res.Entries)
	}
}

// TestOverlayIDMapRefused: an image owner outside the map and a map the
// kernel would refuse fail the unpack, naming the problem, and leave no
// bundle; a rootless container cannot be mapped.
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
		bundle := filepath.Join(t.TempDir(), "b")
		l, err := layout.Open(img)
		must(t, err)
		_, err = s.Unpack(context.Background(), l, "v1", bundle, UnpackOptions{Driver: OverlayDriver, IDMap: tc.m})
		l.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: unpack error %v, want %q", name, err, tc.want)
		}
		if _, err := os.Lstat(bundle); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: failed unpack left the bundle: %v", name, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), TmpDir)); len(ents) != 0 {
		t.Errorf("store tmp/ holds %d leftovers", len(ents))
	}

	o, err := newOverlay(s, s.opts.owners())
	must(t, err)
	infos, err := s.List()
	must(t, err)
	c := &Container{Dir: t.TempDir(), Chain: infos[:1], Rootless: true, IDMap: testMap}
	if err := o.CreateRootfs(context.Background(), c); !errors.Is(err, ErrIDMapNeedsRoot) {
		t.Errorf("rootless CreateRootfs with a map: %v, want ErrIDMapNeedsRoot", err)
	}
	if _, err := os.Lstat(c.State()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused CreateRootfs left state behind: %v", err)
	}
}

// capV2 is the image's form of a file capability (cap_net_raw, effective).
var capV2 = []byte("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// capV3 is capV2 scoped to the namespace whose root is uid.
func capV3(uid uint32) []byte {
	v := append([]byte(nil), capV2...)
	binary.LittleEndian.PutUint32(v, 0x03000001)
	return binary.LittleEndian.AppendUint32(v, uid)
}

const capXattr = "security.capability"

// TestOverlayIDMapCaps: the kernel shows an image's file capability
// through the idmapped layers as scoped to the container's root, and
// copy-up stores it so; commit writes the image's form back.
func TestOverlayIDMapCaps(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	ob := filepath.Join(t.TempDir(), "overlay")
	unmountLater(t, ob)
	unpack(t, s, img, ob, UnpackOptions{Driver: OverlayDriver, IDMap: testMap})
	ping := filepath.Join(ob, RootfsDir, "usr/bin/ping")
	must(t, os.Chmod(ping, 0o750))
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(ob, BundleState, UpperDir, "usr/bin/ping"), capXattr, buf)
	must(t, err)
	if !bytes.Equal(buf[:n], capV3(100000)) {
		t.Logf("copied-up capability %x (the kernel may store another form)", buf[:n])
	}
	res := commitBundle(t, ob, img, "v2", CommitOptions{})
	h := layerHeaders(t, img, res)["usr/bin/ping"]
	if h == nil {
		t.Fatal("layer lacks usr/bin/ping")
	}
	if got := h.PAXRecords["SCHILY.xattr."+capXattr]; got != string(capV2) {
		t.Errorf("committed capability %x, want the image's %x", got, capV2)
	}
}

// TestOverlayIDMapAttached mounts a mapped bundle the way kernels before
// 6.15 need (the idmapped layers attached for the time of the mount):
// the rootfs is the same, and no mount point is left, also after a
// mount killed half-way.
func TestOverlayIDMapAttached(t *testing.T) {
	needRoot(t)
	detachedLayers = func() bool { return false }
	t.Cleanup(func() { detachedLayers = idmap.DetachedLayers })
	img, _ := buildStandard(t)
	s := openStore(t)
	b := filepath.Join(t.TempDir(), "b")
	unmountLater(t, b)
	unpack(t, s, img, b, UnpackOptions{Driver: OverlayDriver, IDMap: testMap})
	r := filepath.Join(b, RootfsDir)
	attach := filepath.Join(b, BundleState, IDMapDir)
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
	low, err := o.lowers(c.Top())
	must(t, err)
	mounts, err := idmappedLayers(low, c.IDMap)
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
