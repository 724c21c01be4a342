package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layertest"
)

func TestStoreOptionsWriter(t *testing.T) {
	single := &IDMap{UIDs: []IDRange{{0, 1001, 1}}, GIDs: []IDRange{{0, 1002, 1}}}
	ranged := &IDMap{
		UIDs: []IDRange{{0, 1001, 1}, {1, 100000, 65536}},
		GIDs: []IDRange{{0, 1002, 1}, {1, 100000, 65536}},
	}
	outside := StoreOptions{Rootless: true, UID: 1001, GID: 1002}
	inRange := StoreOptions{Rootless: true, UID: 0, GID: 0, UserNS: ranged}
	tests := []struct {
		name string
		o    StoreOptions
		form *IDMap
		want *IDMap // image IDs onto the IDs the process gives
		err  error
	}{
		{"root, image owners", StoreOptions{}, &IDMap{}, nil, nil},
		{"root, a user's", StoreOptions{}, single, nil, ErrNotOwner},
		{"user, root's", outside, &IDMap{}, nil, ErrOwnersMismatch},
		{"user outside a namespace", outside, single, single, nil},
		{"user, a namespace's", outside, ranged, nil, ErrOwnersMismatch},
		{"namespace, its own", inRange, ranged, &IDMap{
			UIDs: []IDRange{{0, 0, 1}, {1, 1, 65536}}, GIDs: []IDRange{{0, 0, 1}, {1, 1, 65536}},
		}, nil},
		// The xattr form of an earlier strata, read in the namespace.
		{"namespace, the user alone", inRange, single, &IDMap{UIDs: []IDRange{{0, 0, 1}}, GIDs: []IDRange{{0, 0, 1}}}, nil},
		{"namespace, another user", inRange, &IDMap{UIDs: []IDRange{{0, 7, 1}}, GIDs: []IDRange{{0, 7, 1}}}, nil, ErrOwnersMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.o.writer(tt.form)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || !sameMap(m, tt.want) && !(m == nil && tt.want == nil) {
				t.Fatalf("writer: %v %v, want %v", m, err, tt.want)
			}
		})
	}
	if k := ownersKey(VFS, &IDMap{}); k != VFS {
		t.Errorf("key of the image's owners: %q", k)
	}
	if a, b := ownersKey(OverlayDriver, single), ownersKey(OverlayDriver, ranged); a == b || !strings.HasPrefix(a, "overlay.") {
		t.Errorf("keys %q and %q", a, b)
	}
	for form, want := range map[*IDMap]string{{}: "image", single: "xattr", ranged: "userns"} {
		if got := OwnersKind(form); got != want {
			t.Errorf("OwnersKind(%s) = %s, want %s", form, got, want)
		}
	}
}

// TestApplyOwnersMapped extracts a layer as a process that can give only
// some owners (a user namespace mapping 0-65536), as root standing in for
// its root: mapped owners are given, others fall back to root's with the
// xattr, per uid and gid, and commit's reading gets every image owner back.
func TestApplyOwnersMapped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	layer := layertest.Tar(
		layertest.Owned(layertest.Dir("app", 0o755), 1000, 1000),
		layertest.Owned(layertest.File("app/f", "f", 0o600), 1000, 1000),
		layertest.Owned(layertest.File("far", "x", 0o644), 70000, 70000),
		layertest.Owned(layertest.File("half", "x", 0o644), 1000, 70000),
		layertest.Owned(layertest.File("shadow", "x", 0o640), 0, 42),
		layertest.Owned(layertest.Symlink("link", "far"), 1000, 1000),
		layertest.Owned(layertest.Symlink("farlink", "far"), 70000, 70000),
	)
	m := &IDMap{UIDs: []IDRange{{0, 0, 65537}}, GIDs: []IDRange{{0, 0, 65537}}}
	files := Files{}
	if err := Apply(dir, bytes.NewReader(layer), ApplyOptions{Rootless: true, Owners: m}, files); err != nil {
		t.Fatal(err)
	}
	xattr := func(p string) string {
		b := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dir, p), RootlessXattr, b)
		if err != nil {
			return ""
		}
		u, g, _ := DecodeRootless(b[:n])
		return itoa(u) + ":" + itoa(g)
	}
	for p, want := range map[string][2]string{
		"app": {"1000:1000", ""}, "app/f": {"1000:1000", ""}, "shadow": {"0:42", ""},
		"far": {"0:0", "70000:70000"}, "half": {"1000:0", "0:70000"},
		"link": {"1000:1000", ""}, "farlink": {"0:0", ""},
	} {
		st := lstat(t, filepath.Join(dir, p))
		if got := itoa(int(st.Uid)) + ":" + itoa(int(st.Gid)); got != want[0] {
			t.Errorf("%s: owner %s, want %s", p, got, want[0])
		}
		if got := xattr(p); got != want[1] && !(want[1] == "" && got == "") {
			t.Errorf("%s: xattr %q, want %q", p, got, want[1])
		}
	}
	o := owners{rootless: true, toImage: m}
	for p, e := range files {
		if p == "." {
			continue
		}
		full := filepath.Join(dir, p)
		st := lstat(t, full)
		x, err := fsx.ReadXattrs(full)
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.diskEntry(full, p, st, x, e)
		if err != nil {
			t.Fatal(err)
		}
		if got.UID != e.UID || got.GID != e.GID {
			t.Errorf("%s reads back as %d:%d, want %d:%d", p, got.UID, got.GID, e.UID, e.GID)
		}
	}
	// What a container changes in the namespace wins over the xattr.
	if err := os.Lchown(filepath.Join(dir, "far"), 33, 33); err != nil {
		t.Fatal(err)
	}
	x, _ := fsx.ReadXattrs(filepath.Join(dir, "far"))
	if u, g, _ := o.owner("far", lstat(t, filepath.Join(dir, "far")), x); u != 33 || g != 33 {
		t.Errorf("far chowned to 33:33 reads %d:%d", u, g)
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestOpenMovesOldLayout: Open moves snapshots of an earlier strata's
// layout (ROOT/snapshots/<hex>) under their driver's key, recording the
// ID mapping meta.json lacked; a snapshot already moved, or moved with
// its meta.json rewritten only, is taken as it is.
func TestOpenMovesOldLayout(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "store")
	old := func(name, driver string, owners *IDMap) string {
		id := digest.FromString(name)
		dir := filepath.Join(root, SnapshotsDir, id.Encoded())
		if err := os.MkdirAll(filepath.Join(dir, FSDir), 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(&Info{ID: id.Encoded(), ChainID: id, DiffID: id, Driver: driver, Owners: owners})
		if err := os.WriteFile(filepath.Join(dir, MetaFile), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return id.Encoded()
	}
	a := old("a", VFS, nil)
	b := old("b", OverlayDriver, nil)
	c := old("c", OverlayDriver, &IDMap{})
	user := &IDMap{UIDs: []IDRange{{0, 4242, 1}}, GIDs: []IDRange{{0, 4343, 1}}}
	d := old("d", VFS, nil)
	if err := os.Chown(filepath.Join(root, SnapshotsDir, d, MetaFile), 4242, 4343); err != nil {
		t.Fatal(err)
	}
	// Not a snapshot: no meta.json.
	if err := os.MkdirAll(filepath.Join(root, SnapshotsDir, digest.FromString("e").Encoded(), FSDir), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(root, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for hex, want := range map[string]string{a: VFS, b: OverlayDriver, c: OverlayDriver, d: ownersKey(VFS, user)} {
		in, err := s.Get(hex)
		if err != nil {
			t.Fatalf("%s: %v", hex, err)
		}
		if in.Key() != want || in.Dir != filepath.Join(root, SnapshotsDir, want, hex) || in.Owners == nil {
			t.Errorf("%s: key %s, dir %s, owners %v; want key %s", hex, in.Key(), in.Dir, in.Owners, want)
		}
	}
	if in, _ := s.Get(d); in == nil || !sameMap(in.Owners, user) {
		t.Errorf("a user's snapshot: owners %v, want %v", in.Owners, user)
	} else if st := lstat(t, filepath.Join(in.Dir, MetaFile)); st.Uid != 4242 || st.Gid != 4343 {
		t.Errorf("rewritten meta.json belongs to %d:%d, want the user's", st.Uid, st.Gid)
	}
	infos, err := s.List()
	if err != nil || len(infos) != 4 {
		t.Fatalf("List: %d %v", len(infos), err)
	}
	// Opened again: nothing to move.
	s2, err := Open(root, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}
