package bundle

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

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
	rec := unpack(t, s, img, ob, UnpackOptions{Driver: overlay.Name, IDMap: testMap})
	if rec.Driver != overlay.Name || rec.IDMap.Empty() {
		t.Fatalf("record: driver %q, map %+v", rec.Driver, rec.IDMap)
	}
	r := filepath.Join(ob, snapshot.RootfsDir)
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
	unpack(t, s, img, plain, UnpackOptions{Driver: overlay.Name})
	other := filepath.Join(t.TempDir(), "other")
	unmountLater(t, other)
	unpack(t, s, img, other, UnpackOptions{Driver: overlay.Name, IDMap: &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 300000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 300000, Size: 65536}}}})
	if again, _ := s.List(); len(again) != 3 {
		t.Errorf("%d snapshots after two more unpacks, want 3", len(again))
	}
	wantOwner(t, filepath.Join(plain, snapshot.RootfsDir, "srv"), 33, 33)
	wantOwner(t, filepath.Join(other, snapshot.RootfsDir, "srv"), 300033, 300033)

	// The same changes through vfs, for the layer digest.
	vs, err := snapshot.Open(filepath.Join(t.TempDir(), "vfs-store"), snapshot.StoreOptions{})
	must(t, err)
	defer vs.Close()
	vb := filepath.Join(t.TempDir(), "vfs")
	unpack(t, vs, img, vb, UnpackOptions{IDMap: testMap})

	mappedChanges(t, r)
	mappedChanges(t, filepath.Join(vb, snapshot.RootfsDir))
	upper := filepath.Join(ob, snapshot.BundleState, overlay.UpperDir)
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

// TestOverlayIDMapCaps: the kernel shows an image's file capability
// through the idmapped layers as scoped to the container's root, and
// copy-up stores it so; commit writes the image's form back.
func TestOverlayIDMapCaps(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	ob := filepath.Join(t.TempDir(), "overlay")
	unmountLater(t, ob)
	unpack(t, s, img, ob, UnpackOptions{Driver: overlay.Name, IDMap: testMap})
	ping := filepath.Join(ob, snapshot.RootfsDir, "usr/bin/ping")
	must(t, os.Chmod(ping, 0o750))
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(filepath.Join(ob, snapshot.BundleState, overlay.UpperDir, "usr/bin/ping"), capXattr, buf)
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
