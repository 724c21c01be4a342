package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"golang.org/x/sys/unix"
)

// Throwaway bundles live in STATEDIR/bundles/bundle-*, each flock-held
// by the process that made it.
const (
	bundlesDir   = "bundles"
	bundlePrefix = "bundle-"
)

// TempBundle is a bundle unpacked from an image for one run, as
// docker run --rm has: Remove deletes it, and a bundle whose process was
// killed is deleted by the next UnpackTemp under the same state
// directory.
type TempBundle struct {
	// Dir is the bundle's directory, to give Run.
	Dir   string
	lock  *tempdir.Dir
	store snapshot.StoreOptions
}

// UnpackTemp unpacks the image ref of l into a new throwaway bundle under
// stateDir (see Options.StateDir), with the snapshots of s, after
// deleting the bundles of killed runs there.
func UnpackTemp(ctx context.Context, s *snapshot.Store, l *layout.Layout, ref, stateDir string, o bundle.UnpackOptions) (*TempBundle, error) {
	dir := filepath.Join(stateDir, bundlesDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run state: %w", err)
	}
	sweepBundles(stateDir, s.Options())
	d, err := tempdir.Make(dir, bundlePrefix)
	if err != nil {
		return nil, fmt.Errorf("run state: %w", err)
	}
	if _, err := bundle.Unpack(ctx, s, l, ref, d.Path, o); err != nil {
		_ = d.Remove()
		return nil, err
	}
	return &TempBundle{Dir: d.Path, lock: d, store: s.Options()}, nil
}

// Remove deletes the bundle.
func (b *TempBundle) Remove() error {
	err := deleteBundle(b.Dir, b.store)
	if rerr := b.lock.Remove(); err == nil {
		err = rerr
	}
	return err
}

// sweepBundles deletes the throwaway bundles under stateDir whose
// makers died, after the containers of dead runs, which may still use
// them.
func sweepBundles(stateDir string, o snapshot.StoreOptions) {
	dir := filepath.Join(stateDir, bundlesDir)
	ents, _ := os.ReadDir(dir)
	swept := false
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), bundlePrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if !swept {
				sweepContainers(stateDir)
				swept = true
			}
			_ = deleteBundle(p, o)
		}
		f.Close()
	}
}

// deleteBundle deletes a throwaway bundle, also one whose unpack was
// killed before its record was written.
func deleteBundle(dir string, o snapshot.StoreOptions) error {
	err := bundle.Delete(dir, o)
	if err == nil || !errors.Is(err, bundle.ErrNotUnpacked) {
		return err
	}
	rootfs := filepath.Join(dir, snapshot.RootfsDir)
	if mounted, _ := overlay.IsMounted(rootfs); mounted {
		if err := unix.Unmount(rootfs, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("bundle %s: unmount: %w", dir, err)
		}
	}
	return fsx.RemoveAll(dir)
}
