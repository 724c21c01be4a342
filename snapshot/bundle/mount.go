package bundle

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/strata-oci/strata/snapshot"
)

// Bundle is an unpacked bundle opened to mount or unmount its rootfs.
type Bundle struct {
	s *snapshot.Store
	d snapshot.Driver
	c *snapshot.Container
}

// Open opens the bundle dir to mount or unmount its rootfs: its record,
// its store (opened with o; Close releases it), its snapshots and its
// driver. Mounting writes nothing in the layers: root may mount a user's
// bundle.
func Open(dir string, o snapshot.StoreOptions) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	if rec.Store == "" {
		return nil, fmt.Errorf("bundle %s: %w (%s names no store)", dir, ErrNotUnpacked, RecordFile)
	}
	s, err := snapshot.Open(rec.Store, o)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	owners, chain, err := bundleChain(s, rec, abs)
	if err == nil && len(chain) == 0 {
		err = fmt.Errorf("bundle %s: %s lists no layers", dir, RecordFile)
	}
	var d snapshot.Driver
	if err == nil {
		d, err = openDriver(rec.Driver, s, owners, forMount)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return &Bundle{s: s, d: d, c: &snapshot.Container{Dir: abs, Chain: chain, Rootless: rec.Rootless, IDMap: rec.IDMap}}, nil
}

// Rootfs is the bundle's rootfs directory.
func (b *Bundle) Rootfs() string { return b.c.Rootfs() }

// Mount mounts the rootfs over the bundle's kept changes:
// snapshot.ErrNoMount for a plain directory (vfs),
// overlay.ErrAlreadyMounted when it is mounted.
func (b *Bundle) Mount() error {
	if err := b.d.Mount(b.c); err != nil {
		if errors.Is(err, snapshot.ErrNoMount) {
			return fmt.Errorf("bundle %s: %w", b.c.Dir, err)
		}
		return err
	}
	return nil
}

// Unmount unmounts the rootfs and keeps the bundle's changes.
func (b *Bundle) Unmount() error {
	if err := b.d.Unmount(b.c); err != nil {
		if errors.Is(err, snapshot.ErrNoMount) {
			return fmt.Errorf("bundle %s: %w", b.c.Dir, err)
		}
		return err
	}
	return nil
}

// Close releases the bundle's store.
func (b *Bundle) Close() error { return b.s.Close() }
