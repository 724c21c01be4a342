package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
)

// roots are a store's gc roots (snapshot.Roots) that this package keeps
// in it: the records of the bundles unpacked from it
// (ROOT/containers/*.json) and the layouts images were unpacked from
// (ROOT/layouts.json).
type roots struct {
	s *snapshot.Store
	// prune drops, as they are read, the records of bundles that are
	// gone and the layouts that no longer exist: gc does.
	prune bool
}

// Users maps each snapshot of s, by snapshot.Info.Name, to the bundles
// using it.
func Users(s *snapshot.Store) (map[string][]string, error) {
	return roots{s: s}.Users()
}

// GC removes every snapshot of s nothing uses (see snapshot.Store.GC): a
// snapshot is in use when a live bundle's chain holds it (its
// DIR/.strata-unpack.json still exists and names this store; the
// bundle's driver and ID mapping say which of the chain's snapshots), or
// an image of a layout this store unpacked from holds it (every tag and
// every platform of the layouts in ROOT/layouts.json that still exist;
// every driver's snapshot of it), or a snapshot in use is built on it.
// Records of vanished bundles and layouts are dropped.
func GC(ctx context.Context, s *snapshot.Store) (*snapshot.GCResult, error) {
	return s.GC(ctx, roots{s: s, prune: true})
}

// Remove deletes the snapshots ids of s (see snapshot.Store.Remove),
// refusing those a bundle uses.
func Remove(s *snapshot.Store, ids ...string) error {
	return s.Remove(roots{s: s}, ids...)
}

// bundles returns the records of the live bundles unpacked from the
// store: those whose DIR/.strata-unpack.json still exists and names this
// store and the same chain.
func (r roots) bundles() ([]*Record, error) {
	dir := filepath.Join(r.s.Root(), ContainersDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list bundles in %s: %w", r.s.Root(), err)
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
		if err := json.Unmarshal(b, &rec); err != nil || !live(&rec, r.s.Root()) {
			if r.prune {
				_ = os.Remove(p)
			}
			continue
		}
		out = append(out, &rec)
	}
	return out, nil
}

// live says whether the bundle of the store's record rec still has it:
// its own record names the store and the same chain.
func live(rec *Record, root string) bool {
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

// Users maps each snapshot, by snapshot.Info.Name, to the bundles using
// it.
func (r roots) Users() (map[string][]string, error) {
	recs, err := r.bundles()
	if err != nil {
		return nil, err
	}
	m := map[string][]string{}
	for _, rec := range recs {
		key := snapshot.Key(rec.Driver, recordOwners(r.s, rec, rec.Dir))
		for _, c := range rec.Chain {
			if c.Validate() != nil {
				continue // records are files a user could edit
			}
			name := key + "/" + c.Encoded()
			m[name] = append(m[name], rec.Dir)
		}
	}
	return m, nil
}

// Images lists the chain IDs of every image of the layouts the store
// unpacked from.
func (r roots) Images(ctx context.Context) ([]digest.Digest, error) {
	layouts, err := readLayouts(r.s)
	if err != nil {
		return nil, err
	}
	var gone []string
	var chains []digest.Digest
	for _, dir := range layouts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ids, err := layoutChains(dir)
		if errors.Is(err, layout.ErrNotLayout) || errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, dir)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("gc: layout %s: %w", dir, err)
		}
		chains = append(chains, ids...)
	}
	if r.prune && len(gone) > 0 {
		err := updateLayouts(r.s, func(m map[string]bool) {
			for _, d := range gone {
				delete(m, d)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return chains, nil
}

// Stacked says whether the named driver's snapshots are built on their
// parent's files; an unknown driver's are taken to be.
func (r roots) Stacked(driver string) bool {
	d, ok := drivers[driver]
	return !ok || d.stacked
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
			out = append(out, snapshot.ChainIDs(img.Config.RootFS.DiffIDs)...)
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
