package snapshot

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// The drivers' names, as the store records them.
const (
	vfsName     = "vfs"
	overlayName = "overlay"
)

var (
	needRoot = layertest.NeedRoot
	lstat    = layertest.Lstat
)

func TestStoreOptionsWriter(t *testing.T) {
	single := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 1002, Size: 1}}}
	ranged := &ids.Map{
		UIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 65536}},
		GIDs: []ids.Range{{ContainerID: 0, HostID: 1002, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 65536}},
	}
	outside := StoreOptions{Rootless: true, UID: 1001, GID: 1002}
	inRange := StoreOptions{Rootless: true, UID: 0, GID: 0, UserNS: ranged}
	tests := []struct {
		name string
		o    StoreOptions
		form *ids.Map
		want *ids.Map // image IDs onto the IDs the process gives
		err  error
	}{
		{"root, image owners", StoreOptions{}, &ids.Map{}, nil, nil},
		{"root, a user's", StoreOptions{}, single, nil, ErrNotOwner},
		{"user, root's", outside, &ids.Map{}, nil, ErrOwnersMismatch},
		{"user outside a namespace", outside, single, single, nil},
		{"user, a namespace's", outside, ranged, nil, ErrOwnersMismatch},
		{"namespace, its own", inRange, ranged, &ids.Map{
			UIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1, HostID: 1, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 1}, {ContainerID: 1, HostID: 1, Size: 65536}},
		}, nil},
		// The xattr form of an earlier strata, read in the namespace.
		{"namespace, the user alone", inRange, single, &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 0, Size: 1}}}, nil},
		{"namespace, another user", inRange, &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 7, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 7, Size: 1}}}, nil, ErrOwnersMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.o.Writer(tt.form)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || !ids.Same(m, tt.want) && !(m == nil && tt.want == nil) {
				t.Fatalf("writer: %v %v, want %v", m, err, tt.want)
			}
		})
	}
	if k := Key(vfsName, &ids.Map{}); k != vfsName {
		t.Errorf("key of the image's owners: %q", k)
	}
	if a, b := Key(overlayName, single), Key(overlayName, ranged); a == b || !strings.HasPrefix(a, "overlay.") {
		t.Errorf("keys %q and %q", a, b)
	}
	for form, want := range map[*ids.Map]string{{}: "image", single: "xattr", ranged: "userns"} {
		if got := OwnersKind(form); got != want {
			t.Errorf("OwnersKind(%s) = %s, want %s", form, got, want)
		}
	}
}

// TestOpenMovesOldLayout: Open moves snapshots of an earlier strata's
// layout (ROOT/snapshots/<hex>) under their driver's key, recording the
// ID mapping meta.json lacked; a snapshot already moved, or moved with
// its meta.json rewritten only, is taken as it is.
func TestOpenMovesOldLayout(t *testing.T) {
	needRoot(t)
	root := filepath.Join(t.TempDir(), "store")
	old := func(name, driver string, owners *ids.Map) string {
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
	a := old("a", vfsName, nil)
	b := old("b", overlayName, nil)
	c := old("c", overlayName, &ids.Map{})
	user := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 4242, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 4343, Size: 1}}}
	d := old("d", vfsName, nil)
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
	for hex, want := range map[string]string{a: vfsName, b: overlayName, c: overlayName, d: Key(vfsName, user)} {
		in, err := s.Get(hex)
		if err != nil {
			t.Fatalf("%s: %v", hex, err)
		}
		if in.Key() != want || in.Dir != filepath.Join(root, SnapshotsDir, want, hex) || in.Owners == nil {
			t.Errorf("%s: key %s, dir %s, owners %v; want key %s", hex, in.Key(), in.Dir, in.Owners, want)
		}
	}
	if in, _ := s.Get(d); in == nil || !ids.Same(in.Owners, user) {
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
