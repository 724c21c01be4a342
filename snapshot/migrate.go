package snapshot

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// An earlier strata kept every snapshot directly in ROOT/snapshots/<hex>,
// whatever driver made it, so one image could not have both a vfs and an
// overlay snapshot in a store. Open moves such snapshots to
// ROOT/snapshots/<key>/<hex> (key: the driver and the ID mapping the files
// were written under), with the store lock held exclusively, so no unpack,
// commit or gc runs meanwhile. Each snapshot moves by one rename, after
// its meta.json has been rewritten (atomically) to record the mapping, so
// a crash leaves every snapshot in the old place or the new, and the next
// Open goes on. Bundle records name snapshots by driver and chain ID, so
// they stay valid: a record without the mapping is read the way the
// snapshots were (see WrittenUnder).

// legacy lists the snapshots in the old layout.
func (s *Store) legacy() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", s.root, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || !isHex(e.Name()) {
			continue
		}
		// Snapshots appeared by rename only when complete: a directory
		// without meta.json is none.
		if _, err := os.Lstat(filepath.Join(s.root, SnapshotsDir, e.Name(), MetaFile)); err == nil {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *Store) migrate() error {
	old, err := s.legacy()
	if err != nil || len(old) == 0 {
		return err
	}
	unlock, err := s.exclusive()
	if err != nil {
		return err
	}
	defer unlock()
	// Another process may have moved them while this one waited.
	if old, err = s.legacy(); err != nil {
		return err
	}
	for _, hex := range old {
		if err := s.migrateOne(hex); err != nil {
			return fmt.Errorf("snapshot root %s: move snapshot %s to the layout with one directory per driver: %w", s.root, hex, err)
		}
	}
	return fsx.SyncDir(filepath.Join(s.root, SnapshotsDir))
}

func (s *Store) migrateOne(hex string) error {
	dir := filepath.Join(s.root, SnapshotsDir, hex)
	in, err := readInfo(dir)
	if err != nil {
		return err
	}
	if in.Driver == "" {
		return fmt.Errorf("%s names no driver", MetaFile)
	}
	meta := filepath.Join(dir, MetaFile)
	// What a rewrite killed before its rename left.
	_ = os.Remove(meta + ".tmp")
	if in.Owners == nil {
		var st unix.Stat_t
		if err := unix.Lstat(meta, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: meta, Err: err}
		}
		in.Owners = s.inferOwners(&st)
		b, err := json.MarshalIndent(in, "", "\t")
		if err != nil {
			return err
		}
		if err := fsx.WriteFile(meta, b, 0o644); err != nil {
			return err
		}
		s.giveBack(meta, &st)
	}
	keyDir, err := s.keyDir(Key(in.Driver, in.Owners))
	if err != nil {
		return err
	}
	target := filepath.Join(keyDir, hex)
	if _, err := os.Lstat(target); err == nil {
		// The same snapshot is there already (an older strata made it
		// again meanwhile): this copy is litter, which gc sweeps.
		tmp, err := os.MkdirTemp(filepath.Join(s.root, TmpDir), "legacy-")
		if err != nil {
			return err
		}
		return os.Rename(dir, filepath.Join(tmp, hex))
	}
	if err := os.Rename(dir, target); err != nil {
		return err
	}
	return fsx.SyncDir(keyDir)
}

// inferOwners says under which mapping an earlier strata, which did not
// record it, wrote a file whose stat is st: root wrote the image's owners
// as they are; any other user wrote its own files, standing for root, and
// kept other owners in the user.rootlesscontainers xattr (in its user
// namespace too).
func (s *Store) inferOwners(st *unix.Stat_t) *ids.Map {
	uid, gid := int(st.Uid), int(st.Gid)
	if v := s.opts.view(); v != nil {
		if u, ok := ids.Lookup(v.UIDs, uid); ok {
			uid = u
		}
		if g, ok := ids.Lookup(v.GIDs, gid); ok {
			gid = g
		}
	}
	if uid == 0 {
		return &ids.Map{}
	}
	return &ids.Map{
		UIDs: []ids.Range{{ContainerID: 0, HostID: uint32(uid), Size: 1}},
		GIDs: []ids.Range{{ContainerID: 0, HostID: uint32(gid), Size: 1}},
	}
}

// WrittenUnder is the mapping under which an earlier strata, which did
// not record it, wrote the file p (a bundle's record), inferred from its
// owner as for the snapshots Open moves.
func (s *Store) WrittenUnder(p string) (*ids.Map, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	return s.inferOwners(&st), nil
}

// keyDir makes (if needed) and returns ROOT/snapshots/key, owned like
// ROOT/snapshots: root may be the one tidying up a user's store.
func (s *Store) keyDir(key string) (string, error) {
	parent := filepath.Join(s.root, SnapshotsDir)
	dir := filepath.Join(parent, key)
	err := os.Mkdir(dir, 0o700)
	if os.IsExist(err) {
		return dir, nil
	}
	if err != nil {
		return "", err
	}
	var st unix.Stat_t
	if unix.Lstat(parent, &st) == nil {
		s.giveBack(dir, &st)
	}
	return dir, fsx.SyncDir(parent)
}

// giveBack gives p the owner in st where this process made p as another
// user (root in a user's store); failures leave it as it is.
func (s *Store) giveBack(p string, st *unix.Stat_t) {
	var now unix.Stat_t
	if unix.Lstat(p, &now) != nil || (now.Uid == st.Uid && now.Gid == st.Gid) {
		return
	}
	_ = unix.Lchown(p, int(st.Uid), int(st.Gid))
}
