package snapshot

import (
	"archive/tar"
	"bytes"
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
)

// testMap shifts users by 100000 and groups by 200000, so that a swapped
// uid and gid shows.
var testMap = &IDMap{UIDs: []IDRange{{0, 100000, 65536}}, GIDs: []IDRange{{0, 200000, 65536}}}

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
	unpack(t, s, img, other, UnpackOptions{Driver: OverlayDriver, IDMap: &IDMap{UIDs: []IDRange{{0, 300000, 65536}}, GIDs: []IDRange{{0, 300000, 65536}}}})
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
		m    *IDMap
		want string
	}{
		"owner outside":    {&IDMap{UIDs: []IDRange{{0, 100000, 1000}}, GIDs: []IDRange{{0, 100000, 65536}}}, "/home/alice is owned by 1000:1000"},
		"overlapping uids": {&IDMap{UIDs: []IDRange{{0, 100000, 100}, {50, 300000, 10}}}, "uid map: invalid id map"},
		"overlapping host": {&IDMap{GIDs: []IDRange{{0, 100000, 100}, {1000, 100050, 10}}}, "same host IDs"},
	} {
		bundle := filepath.Join(t.TempDir(), "b")
		l, err := layout.Open(img)
		must(t, err)
		_, err = s.Unpack(l, "v1", bundle, UnpackOptions{Driver: OverlayDriver, IDMap: tc.m})
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

	o, err := NewOverlay(s)
	must(t, err)
	infos, err := s.List()
	must(t, err)
	c := &Container{Dir: t.TempDir(), Chain: infos[:1], Rootless: true, IDMap: testMap}
	if err := o.CreateRootfs(c); !errors.Is(err, ErrIDMapNeedsRoot) {
		t.Errorf("rootless CreateRootfs with a map: %v, want ErrIDMapNeedsRoot", err)
	}
	if _, err := os.Lstat(c.State()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused CreateRootfs left state behind: %v", err)
	}
}

func TestValidateIDRanges(t *testing.T) {
	many := make([]IDRange, maxIDRanges+1)
	for i := range many {
		many[i] = IDRange{uint32(i), uint32(100000 + i), 1}
	}
	for _, tc := range []struct {
		name string
		rs   []IDRange
		ok   bool
	}{
		{"none", nil, true},
		{"one", []IDRange{{0, 100000, 65536}}, true},
		{"adjacent", []IDRange{{0, 100000, 10}, {10, 100010, 10}}, true},
		{"whole space", []IDRange{{0, 0, 1<<32 - 1}}, true},
		{"container overlap", []IDRange{{0, 100000, 10}, {9, 200000, 10}}, false},
		{"host overlap", []IDRange{{0, 100000, 10}, {100, 100009, 10}}, false},
		{"contained", []IDRange{{0, 100000, 100}, {10, 100010, 5}}, false},
		{"empty", []IDRange{{0, 100000, 0}}, false},
		{"overflow", []IDRange{{1<<32 - 1, 0, 2}}, false},
		{"too many", many, false},
		{"many enough", many[:maxIDRanges], true},
	} {
		err := ValidateIDRanges(tc.rs)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidIDMap) {
			t.Errorf("%s: %v is not ErrInvalidIDMap", tc.name, err)
		}
	}
}

// FuzzValidateIDRanges: a map that validates shifts every ID of its
// ranges to the host and back to itself.
func FuzzValidateIDRanges(f *testing.F) {
	f.Add(uint32(0), uint32(100000), uint32(65536), uint32(65536), uint32(200000), uint32(10))
	f.Add(uint32(0), uint32(0), uint32(10), uint32(5), uint32(20), uint32(10))
	f.Fuzz(func(t *testing.T, c1, h1, s1, c2, h2, s2 uint32) {
		rs := []IDRange{{c1, h1, s1}, {c2, h2, s2}}
		if ValidateIDRanges(rs) != nil {
			return
		}
		m := &IDMap{UIDs: rs, GIDs: rs}
		for _, r := range rs {
			for _, id := range []uint32{r.ContainerID, r.ContainerID + r.Size - 1} {
				u, g, err := m.ToHost(int(id), int(id))
				if err != nil {
					t.Fatalf("%v: %d: %v", rs, id, err)
				}
				bu, bg, err := m.ToContainer(u, g)
				if err != nil || bu != int(id) || bg != int(id) {
					t.Fatalf("%v: %d -> %d -> %d, %v", rs, id, u, bu, err)
				}
			}
		}
	})
}

// capV2 is the image's form of a file capability (cap_net_raw, effective).
var capV2 = []byte("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// capV3 is capV2 scoped to the namespace whose root is uid.
func capV3(uid uint32) []byte {
	v := append([]byte(nil), capV2...)
	binary.LittleEndian.PutUint32(v, 0x03000001)
	return binary.LittleEndian.AppendUint32(v, uid)
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

func TestUnshiftCaps(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []byte
		err     bool
	}{
		{"container root", capV3(100000), capV2, false},
		{"other mapped user", capV3(101000), capV3(1000), false},
		{"outside the map", capV3(5), nil, true},
		{"v2 unchanged", capV2, capV2, false},
		{"short unchanged", capV2[:10], capV2[:10], false},
		{"v3 magic, v2 size", append([]byte{0, 0, 0, 3}, capV2[4:]...), append([]byte{0, 0, 0, 3}, capV2[4:]...), false},
	} {
		d := &Diff{entries: []*diffEntry{{kind: diffFile, path: "f", e: &Entry{Path: "f", Xattrs: map[string][]byte{capXattr: tc.in, "user.x": capV3(100000)}}}, {kind: diffWhiteout, path: "w"}}}
		err := unshiftCaps(d, testMap)
		if (err != nil) != tc.err {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "/f") {
				t.Errorf("%s: error %v does not name the file", tc.name, err)
			}
			continue
		}
		x := d.entries[0].e.Xattrs
		if !bytes.Equal(x[capXattr], tc.out) {
			t.Errorf("%s: %x, want %x", tc.name, x[capXattr], tc.out)
		}
		if !bytes.Equal(x["user.x"], capV3(100000)) {
			t.Errorf("%s: another xattr changed", tc.name)
		}
	}
}

// FuzzUnshiftCaps: any capability value either fails naming the file or
// comes out as itself or a well-formed v2/v3 value.
func FuzzUnshiftCaps(f *testing.F) {
	f.Add(capV3(100000))
	f.Add(capV2)
	f.Add(capV3(7))
	f.Fuzz(func(t *testing.T, v []byte) {
		in := append([]byte(nil), v...)
		d := &Diff{entries: []*diffEntry{{kind: diffFile, path: "f", e: &Entry{Xattrs: map[string][]byte{capXattr: v}}}}}
		if err := unshiftCaps(d, testMap); err != nil {
			return
		}
		out := d.entries[0].e.Xattrs[capXattr]
		if !bytes.Equal(out, in) && len(out) != capV2Size && len(out) != capV3Size {
			t.Fatalf("%x became %x", in, out)
		}
	})
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
	st, o, c, err := OverlayBundle(b, StoreOptions{})
	must(t, err)
	defer st.Close()
	must(t, o.Unmount(c))
	low, err := o.Lowers(c.Top())
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
