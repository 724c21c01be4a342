package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
)

// PruneResult says what Prune removed.
type PruneResult struct {
	// Images counts the cache's names removed (step images and pulled
	// FROM images), Blobs and Bytes the blobs that went with them.
	Images int
	Blobs  int
	Bytes  int64
	// Mounts counts the RUN --mount=type=cache directories removed.
	Mounts int
	// Snapshots counts the snapshots no longer used by anything.
	Snapshots int
}

// Prune empties the build cache of the store s: every step image and
// pulled FROM image, the cache mounts (unless keepMounts), what killed
// builds left, then every snapshot nothing else uses (bundle.GC). A build
// running meanwhile keeps what it holds.
func Prune(ctx context.Context, s *snapshot.Store, keepMounts bool) (*PruneResult, error) {
	res := &PruneResult{}
	base := filepath.Join(s.Root(), BuildDir)
	sweepWork(s)
	dir := CacheDir(s.Root())
	if _, err := os.Stat(filepath.Join(dir, layout.LayoutFile)); err == nil {
		l, err := layout.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("build cache %s: %w", dir, err)
		}
		err = l.UpdateIndex(func(idx *layout.Index) error {
			res.Images = len(idx.Manifests)
			idx.Manifests = idx.Manifests[:0]
			return nil
		})
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("build cache %s: %w", dir, err)
		}
		l, err = layout.Open(dir)
		if err != nil {
			return nil, err
		}
		g, err := l.GC(ctx)
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("build cache %s: %w", dir, err)
		}
		res.Blobs, res.Bytes = len(g.Removed), g.Bytes
	}
	if !keepMounts {
		mounts := filepath.Join(base, MountsDir)
		ents, err := os.ReadDir(mounts)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range ents {
			if e.IsDir() {
				res.Mounts++
			}
			if err := fsx.RemoveAll(filepath.Join(mounts, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	g, err := bundle.GC(ctx, s)
	if err != nil {
		return nil, err
	}
	res.Snapshots = len(g.Removed)
	return res, nil
}
