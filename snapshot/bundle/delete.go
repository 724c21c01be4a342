package bundle

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
)

// Delete removes the bundle dir, which Unpack made: its rootfs through
// its driver (an overlay rootfs unmounted first), its record in the
// store (opened with o) and the directory with everything in it. The
// snapshots stay, for gc. A Delete that was interrupted is finished by
// the next one: the bundle's record goes last.
func Delete(dir string, o snapshot.StoreOptions) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return err
	}
	if rec.Store == "" {
		return fmt.Errorf("bundle %s: %w (%s names no store)", dir, ErrNotUnpacked, RecordFile)
	}
	s, err := snapshot.Open(rec.Store, o)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer s.Close()
	d, err := openDriver(rec.Driver, s, recordOwners(s, rec, abs), forMount)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	c := &snapshot.Container{Dir: abs, Rootless: rec.Rootless, IDMap: rec.IDMap}
	if err := d.RemoveRootfs(c); err != nil {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := os.Remove(storeRecord(s, abs)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	for _, name := range []string{SpecFile, ProgressFile, snapshot.BundleState} {
		if err := fsx.RemoveAll(filepath.Join(abs, name)); err != nil {
			return fmt.Errorf("bundle %s: %w", dir, err)
		}
	}
	if err := os.Remove(filepath.Join(abs, RecordFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := os.Remove(abs); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("bundle %s: %w", dir, err)
	}
	return nil
}
