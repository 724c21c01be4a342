package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
)

// Roots says which snapshots are in use. The store knows nothing of the
// bundles and images that use them: its caller does (the bundle
// package's records and layouts). GC and Remove ask with the store lock
// held exclusively, so no unpack or commit adds a user meanwhile.
type Roots interface {
	// Users maps the Name of each snapshot a bundle uses to those
	// bundles' directories.
	Users() (map[string][]string, error)
	// Images lists the chain IDs of images whose snapshots, of every
	// driver and mapping, are kept.
	Images(ctx context.Context) ([]digest.Digest, error)
	// Stacked says whether snapshots of the named driver are built on
	// their parent's files (Driver.Stacked), so that a snapshot in use
	// keeps its parent; an unknown driver's are.
	Stacked(driver string) bool
}

// pinnedParents adds to keep (by Info.Name) the snapshots a kept one
// depends on: a stacked driver's snapshot needs every snapshot below it,
// under the same store key.
func pinnedParents(infos []*Info, keep map[string]bool, roots Roots) {
	byName := map[string]*Info{}
	for _, in := range infos {
		byName[in.Name()] = in
	}
	for changed := true; changed; {
		changed = false
		for _, in := range infos {
			if !keep[in.Name()] || in.Parent == "" || !roots.Stacked(in.Driver) {
				continue
			}
			if p := byName[in.key+"/"+in.Parent.Encoded()]; p != nil && !keep[p.Name()] {
				keep[p.Name()] = true
				changed = true
			}
		}
	}
}

// Remove deletes the snapshots ids (as Get takes them). A snapshot a live
// bundle uses, or another snapshot is built on, is refused with ErrInUse.
func (s *Store) Remove(roots Roots, ids ...string) error {
	unlock, err := s.exclusive()
	if err != nil {
		return err
	}
	defer unlock()
	victims, err := s.removable(roots, ids)
	if err != nil {
		return err
	}
	for _, v := range victims {
		if err := s.removeSnapshot(v); err != nil {
			return err
		}
	}
	return nil
}

// removable finds the snapshots ids and checks nothing uses them.
func (s *Store) removable(roots Roots, ids []string) ([]*Info, error) {
	users, err := roots.Users()
	if err != nil {
		return nil, err
	}
	infos, err := s.List()
	if err != nil {
		return nil, err
	}
	var victims []*Info
	gone := map[string]bool{}
	for _, id := range ids {
		in, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		if u := users[in.Name()]; len(u) > 0 {
			return nil, fmt.Errorf("snapshot %s: %w by bundle %s", in.Name(), ErrInUse, u[0])
		}
		victims = append(victims, in)
		gone[in.Name()] = true
	}
	for _, in := range infos {
		if gone[in.Name()] || !roots.Stacked(in.Driver) {
			continue
		}
		for _, v := range victims {
			if in.key == v.key && in.Parent == v.ChainID {
				return nil, fmt.Errorf("snapshot %s: %w: snapshot %s is built on it", v.Name(), ErrInUse, in.Name())
			}
		}
	}
	return victims, nil
}

// removeSnapshot renames the snapshot out of snapshots/ first, so that it
// disappears at once and a crash leaves only litter in tmp/.
func (s *Store) removeSnapshot(in *Info) error {
	tmp, err := os.MkdirTemp(filepath.Join(s.root, TmpDir), "rm-")
	if err != nil {
		return err
	}
	dst := filepath.Join(tmp, in.ID)
	if err := os.Rename(in.Dir, dst); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("remove snapshot %s: %w", in.Name(), err)
	}
	if err := fsx.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", in.Name(), err)
	}
	// An emptied key directory goes too; callers hold the store lock
	// exclusively, so no unpack is about to put a snapshot there.
	_ = os.Remove(filepath.Dir(in.Dir))
	return nil
}

// GCResult says what GC removed.
type GCResult struct {
	Removed []*Info
	// Kept counts the snapshots still in use.
	Kept  int
	Bytes int64
}

// GC removes every snapshot roots does not keep: those no bundle uses,
// of no image roots keeps, and no snapshot in use is built on. ROOT/tmp
// is emptied of interrupted work. A cancelled ctx stops it between
// snapshots.
func (s *Store) GC(ctx context.Context, roots Roots) (*GCResult, error) {
	unlock, err := s.exclusive()
	if err != nil {
		return nil, err
	}
	defer unlock()
	keep, infos, err := s.inUse(ctx, roots)
	if err != nil {
		return nil, err
	}
	res := &GCResult{}
	for _, in := range infos {
		if keep[in.Name()] {
			res.Kept++
			continue
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if err := s.removeSnapshot(in); err != nil {
			return res, err
		}
		res.Removed = append(res.Removed, in)
		res.Bytes += in.Size
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, TmpDir))
	for _, e := range ents {
		if err := fsx.RemoveAll(filepath.Join(s.root, TmpDir, e.Name())); err != nil {
			return res, err
		}
	}
	return res, nil
}

// inUse lists the store's snapshots and says, by Info.Name, which roots
// keeps.
func (s *Store) inUse(ctx context.Context, roots Roots) (map[string]bool, []*Info, error) {
	keep := map[string]bool{}
	users, err := roots.Users()
	if err != nil {
		return nil, nil, err
	}
	for name := range users {
		keep[name] = true
	}
	images, err := roots.Images(ctx)
	if err != nil {
		return nil, nil, err
	}
	keepHex := map[string]bool{} // every driver's
	for _, id := range images {
		keepHex[id.Encoded()] = true
	}
	infos, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	for _, in := range infos {
		if keepHex[in.ID] {
			keep[in.Name()] = true
		}
	}
	pinnedParents(infos, keep, roots)
	return keep, infos, nil
}
