package layer

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// testMap shifts users by 100000 and groups by 200000, so that a swapped
// uid and gid shows.
var testMap = &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 200000, Size: 65536}}}

func TestSameEntry(t *testing.T) {
	base := Entry{Path: "f", Type: TypeReg, Mode: 0o644, UID: 1, GID: 2, Size: 3, Mtime: 4, Xattrs: map[string][]byte{"user.a": []byte("1")}}
	for _, tc := range []struct {
		name string
		edit func(e *Entry)
		same bool
	}{
		{"identical", func(*Entry) {}, true},
		{"hardlink target ignored", func(e *Entry) { e.Link = "g" }, true},
		{"mode", func(e *Entry) { e.Mode = 0o600 }, false},
		{"uid", func(e *Entry) { e.UID = 0 }, false},
		{"gid", func(e *Entry) { e.GID = 0 }, false},
		{"size", func(e *Entry) { e.Size = 4 }, false},
		{"mtime", func(e *Entry) { e.Mtime = 5 }, false},
		{"type", func(e *Entry) { e.Type = TypeFifo }, false},
		{"xattr value", func(e *Entry) { e.Xattrs = map[string][]byte{"user.a": []byte("2")} }, false},
		{"xattr added", func(e *Entry) { e.Xattrs = map[string][]byte{"user.a": []byte("1"), "user.b": nil} }, false},
		{"xattr removed", func(e *Entry) { e.Xattrs = nil }, false},
	} {
		e := base
		tc.edit(&e)
		if got := SameEntry(&base, &e); got != tc.same {
			t.Errorf("%s: sameEntry = %v, want %v", tc.name, got, tc.same)
		}
	}
	a := Entry{Type: TypeSymlink, Link: "x"}
	b := a
	b.Link = "y"
	if SameEntry(&a, &b) {
		t.Error("symlinks with different targets compare equal")
	}
	c := Entry{Type: TypeChar, DevMajor: 1, DevMinor: 3}
	d := c
	d.DevMinor = 5
	if SameEntry(&c, &d) {
		t.Error("devices with different numbers compare equal")
	}
}

func TestOwnersRootless(t *testing.T) {
	// Outside a namespace: the user's files stand for root.
	o := Ownership{Rootless: true, ToImage: &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 1002, Size: 1}}}}
	st := &unix.Stat_t{Uid: 1001, Gid: 1002}
	if u, g, err := o.Owner("f", st, nil); err != nil || u != 0 || g != 0 {
		t.Fatalf("user's file: %d:%d %v, want 0:0", u, g, err)
	}
	if u, g, err := o.Owner("f", st, map[string][]byte{RootlessXattr: EncodeRootless(5, 6)}); err != nil || u != 5 || g != 6 {
		t.Fatalf("xattr owner: %d:%d %v, want 5:6", u, g, err)
	}
	if _, _, err := o.Owner("f", st, map[string][]byte{RootlessXattr: {0xff}}); err == nil {
		t.Fatal("bad rootless xattr accepted")
	}
	ns := Ownership{Rootless: true, ToImage: &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 65537}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 65537}}}}
	if u, g, _ := ns.Owner("f", &unix.Stat_t{Uid: 7, Gid: 8}, nil); u != 7 || g != 8 {
		t.Fatalf("in a user namespace: %d:%d, want 7:8", u, g)
	}
	// The xattr speaks for an ID only while the file still has root's,
	// which the extractor gave it: an ID the container set wins.
	for _, tt := range []struct {
		uid, gid         uint32
		wantUID, wantGID int
	}{
		{0, 0, 70000, 42}, {33, 0, 33, 42}, {0, 33, 70000, 33}, {5, 6, 5, 6},
	} {
		x := map[string][]byte{RootlessXattr: EncodeRootless(70000, 42)}
		if u, g, err := ns.Owner("f", &unix.Stat_t{Uid: tt.uid, Gid: tt.gid}, x); err != nil || u != tt.wantUID || g != tt.wantGID {
			t.Errorf("file %d:%d with xattr 70000:42: %d:%d %v, want %d:%d", tt.uid, tt.gid, u, g, err, tt.wantUID, tt.wantGID)
		}
	}
	m := Ownership{IDMap: &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 1000, Size: 10}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 2000, Size: 10}}}}
	if u, g, err := m.Owner("f", &unix.Stat_t{Uid: 1003, Gid: 2004}, nil); err != nil || u != 3 || g != 4 {
		t.Fatalf("id map: %d:%d %v, want 3:4", u, g, err)
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
		d := NewDiff("", []*Change{{Kind: ChangeFile, Path: "f", Entry: &Entry{Path: "f", Xattrs: map[string][]byte{capXattr: tc.in, "user.x": capV3(100000)}}}, {Kind: ChangeWhiteout, Path: "w"}})
		err := UnshiftCaps(d, testMap)
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
		x := d.changes[0].Entry.Xattrs
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
		d := NewDiff("", []*Change{{Kind: ChangeFile, Path: "f", Entry: &Entry{Xattrs: map[string][]byte{capXattr: v}}}})
		if err := UnshiftCaps(d, testMap); err != nil {
			return
		}
		out := d.changes[0].Entry.Xattrs[capXattr]
		if !bytes.Equal(out, in) && len(out) != capV2Size && len(out) != capV3Size {
			t.Fatalf("%x became %x", in, out)
		}
	})
}

// TestFixClampedConfined swaps a directory of the rootfs for a symlink
// out of it: fixing clamped mtimes changes nothing outside the rootfs.
func TestFixClampedConfined(t *testing.T) {
	needRoot(t)
	rootfs := t.TempDir()
	must(t, os.Mkdir(filepath.Join(rootfs, "d"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "d/secret"), []byte("inside"), 0o644))
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("OUTSID"), 0o644))
	d := NewDiff(rootfs, []*Change{
		{Kind: ChangeFile, Path: "d", Entry: &Entry{Path: "d", Type: TypeDir, Mode: 0o755, Mtime: 5e9}},
		{Kind: ChangeFile, Path: "d/secret", Entry: &Entry{Path: "d/secret", Type: TypeReg, Mode: 0o644, Size: 6, Mtime: 5e9}},
	})
	must(t, os.Rename(filepath.Join(rootfs, "d"), filepath.Join(rootfs, "d.moved")))
	must(t, os.Symlink(outside, filepath.Join(rootfs, "d")))
	var before unix.Stat_t
	must(t, unix.Lstat(filepath.Join(outside, "secret"), &before))
	for _, c := range d.changes {
		c.clamped = true
	}
	_ = d.FixClamped(rootfs, time.Unix(1, 0))
	var after unix.Stat_t
	must(t, unix.Lstat(filepath.Join(outside, "secret"), &after))
	if after.Mtim != before.Mtim {
		t.Fatal("fixing clamped mtimes touched a file outside the rootfs")
	}
}
