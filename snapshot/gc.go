package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/ids"
)

func sortStrings(s []string) { sort.Strings(s) }

// Bundles returns the records of the live bundles unpacked from this
// store: those whose DIR/.strata-unpack.json still exists and names this
// store and the same chain. With prune, records of bundles that are gone
// are deleted.
func (s *Store) Bundles(prune bool) ([]*Record, error) {
	dir := filepath.Join(s.root, ContainersDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list bundles in %s: %w", s.root, err)
	}
	var out []*Record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil || !bundleLive(&rec, s.root) {
			if prune {
				_ = os.Remove(p)
			}
			continue
		}
		out = append(out, &rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

func bundleLive(rec *Record, root string) bool {
	cur, err := ReadRecord(rec.Dir)
	if err != nil || cur.Store != root || len(cur.Chain) != len(rec.Chain) {
		return false
	}
	for i := range cur.Chain {
		if cur.Chain[i] != rec.Chain[i] {
			return false
		}
	}
	return true
}

// bundleChain finds the snapshots of the chain of rec, the record of the
// bundle dir, and the mapping they were written under.
func (s *Store) bundleChain(rec *Record, dir string) (*ids.Map, []*Info, error) {
	owners := s.recordOwners(rec, dir)
	key := ownersKey(rec.Driver, owners)
	chain := make([]*Info, len(rec.Chain))
	for i, id := range rec.Chain {
		if err := id.Validate(); err != nil || id.Algorithm() != digest.SHA256 {
			return nil, nil, fmt.Errorf("bundle %s: %s: bad chain ID %q", dir, RecordFile, id)
		}
		in, err := s.get(key, id)
		if err != nil {
			return nil, nil, fmt.Errorf("bundle %s: layer %d: %w", dir, i+1, err)
		}
		chain[i] = in
	}
	return owners, chain, nil
}

// Users maps each snapshot, by Info.Name, to the bundles using it.
func (s *Store) Users() (map[string][]string, error) {
	recs, err := s.Bundles(false)
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, r := range recs {
		key := ownersKey(r.Driver, s.recordOwners(r, r.Dir))
		for _, c := range r.Chain {
			if h := hexOf(c); h != "" {
				m[key+"/"+h] = append(m[key+"/"+h], r.Dir)
			}
		}
	}
	return m, nil
}

// pinnedParents adds to keep (by Info.Name) the snapshots a kept one
// depends on: with overlay, a layer is a lower directory of every
// snapshot above it, under the same store key.
func pinnedParents(infos []*Info, keep map[string]bool) {
	byName := map[string]*Info{}
	for _, in := range infos {
		byName[in.Name()] = in
	}
	for changed := true; changed; {
		changed = false
		for _, in := range infos {
			if !keep[in.Name()] || in.Driver == VFS || in.Parent == "" {
				continue
			}
			if p := byName[in.key+"/"+in.Parent.Encoded()]; p != nil && !keep[p.Name()] {
				keep[p.Name()] = true
				changed = true
			}
		}
	}
}

// Remove deletes the snapshots ids. A snapshot a live bundle uses, or
// another snapshot is built on (overlay), is refused with ErrInUse.
func (s *Store) Remove(ids ...string) error {
	unlock, err := s.exclusive()
	if err != nil {
		return err
	}
	defer unlock()
	users, err := s.Users()
	if err != nil {
		return err
	}
	infos, err := s.List()
	if err != nil {
		return err
	}
	var victims []*Info
	for _, id := range ids {
		in, err := s.Get(id)
		if err != nil {
			return err
		}
		if u := users[in.Name()]; len(u) > 0 {
			return fmt.Errorf("snapshot %s: %w by bundle %s", in.Name(), ErrInUse, u[0])
		}
		victims = append(victims, in)
	}
	gone := map[string]bool{}
	for _, v := range victims {
		gone[v.Name()] = true
	}
	for _, in := range infos {
		if gone[in.Name()] || in.Driver == VFS {
			continue
		}
		for _, v := range victims {
			if in.key == v.key && in.Parent == v.ChainID {
				return fmt.Errorf("snapshot %s: %w: snapshot %s is built on it", v.Name(), ErrInUse, in.Name())
			}
		}
	}
	for _, v := range victims {
		if err := s.removeSnapshot(v); err != nil {
			return err
		}
	}
	return nil
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

// GC removes every snapshot nothing uses. A snapshot is in use when
//   - a live bundle's chain holds it (its DIR/.strata-unpack.json still
//     exists and names this store; the bundle's driver and ID mapping
//     say which of the chain's snapshots), or
//   - an image in a layout this store unpacked from holds it (every tag
//     and every platform of the layouts in ROOT/layouts.json that still
//     exist; every driver's snapshot of it), or
//   - a snapshot in use is built on it (overlay lower layers).
//
// Records of vanished bundles and layouts are dropped, and ROOT/tmp is
// emptied of interrupted work.
func (s *Store) GC() (*GCResult, error) {
	unlock, err := s.exclusive()
	if err != nil {
		return nil, err
	}
	defer unlock()
	keep := map[string]bool{}    // by Info.Name
	keepHex := map[string]bool{} // every driver's
	recs, err := s.Bundles(true)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		key := ownersKey(r.Driver, s.recordOwners(r, r.Dir))
		for _, c := range r.Chain {
			keep[key+"/"+hexOf(c)] = true
		}
	}
	var layouts []string
	if b, err := os.ReadFile(filepath.Join(s.root, LayoutsFile)); err == nil {
		if err := json.Unmarshal(b, &layouts); err != nil {
			return nil, fmt.Errorf("%s: %w", LayoutsFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var goneLayouts []string
	for _, dir := range layouts {
		ids, err := layoutChains(dir)
		if errors.Is(err, layout.ErrNotLayout) || errors.Is(err, fs.ErrNotExist) {
			goneLayouts = append(goneLayouts, dir)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("gc: layout %s: %w", dir, err)
		}
		for _, id := range ids {
			keepHex[id.Encoded()] = true
		}
	}
	if len(goneLayouts) > 0 {
		if err := s.updateLayouts(func(m map[string]bool) {
			for _, d := range goneLayouts {
				delete(m, d)
			}
		}); err != nil {
			return nil, err
		}
	}
	infos, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, in := range infos {
		if keepHex[in.ID] {
			keep[in.Name()] = true
		}
	}
	pinnedParents(infos, keep)
	res := &GCResult{}
	for _, in := range infos {
		if keep[in.Name()] {
			res.Kept++
			continue
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

// layoutChains lists the chain IDs of every image (every platform) the
// layout's index names.
func layoutChains(dir string) ([]digest.Digest, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	l, err := layout.Open(dir)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, top := range idx.Manifests {
		err := l.Walk(top, func(d ocispec.Descriptor, b []byte) error {
			if !layout.IsManifest(d.MediaType) {
				return nil
			}
			img, err := l.ReadImage(d)
			if err != nil {
				return nil // a broken image pins nothing; fsck reports it
			}
			out = append(out, ChainIDs(img.Config.RootFS.DiffIDs)...)
			return nil
		})
		if err != nil {
			// Missing blobs in a layout are fsck's business; keep
			// what could be read.
			continue
		}
	}
	return out, nil
}

// hexOf is a chain ID's hex, or "" for a malformed one (records are
// files a user could edit).
func hexOf(d digest.Digest) string {
	if d.Validate() != nil {
		return ""
	}
	return d.Encoded()
}
