package snapshot

import (
	"errors"
	"fmt"
	"os"

	"github.com/strata-oci/strata/internal/fsx"
)

// VFS is the name of the copying driver.
const VFS = "vfs"

func init() {
	RegisterDriver(VFS, func(s *Store, owners *IDMap) (Driver, error) {
		m, err := s.opts.writer(owners)
		if err != nil {
			return nil, err
		}
		// In a user namespace root can chown only to mapped IDs and
		// cannot make devices: extract as an unprivileged user would,
		// giving the owners the namespace maps.
		return &vfsDriver{
			rootless: s.opts.Rootless, owners: owners, m: m,
			keepOwners: s.opts.Rootless && s.opts.UserNS != nil,
		}, nil
	})
}

// vfsDriver keeps whole root file systems as plain directories: it works
// on any file system and for any user. Each layer is applied on a copy of
// its parent whose directories are new and whose other files are
// hardlinks to the parent's (safe because extraction replaces files and
// never writes into one); a rootfs is a real copy, cloned where the file
// system can, else copied with copy_file_range, holes kept. When Unpack
// has layers to extract, it builds the rootfs from their streams instead
// (vfs_stream.go) and CreateRootfs is not called.
type vfsDriver struct {
	rootless bool
	// owners is the mapping snapshots are written under, m what it
	// makes of image IDs for this process (ApplyOptions.Owners).
	owners, m *IDMap
	// keepOwners: rootless in a user namespace, where copies keep the
	// owners the namespace maps (outside one, all files are the user's).
	keepOwners bool
}

func (v *vfsDriver) Name() string { return VFS }

func (v *vfsDriver) Owners() *IDMap { return v.owners }

// copyOptions is how the driver copies its trees.
func (v *vfsDriver) copyOptions() copyOptions {
	return copyOptions{rootless: v.rootless, keepOwners: v.keepOwners}
}

func (v *vfsDriver) applyOptions() ApplyOptions {
	return ApplyOptions{Whiteouts: WhiteoutDelete, Rootless: v.rootless, Owners: v.m, DropCache: true}
}

func (v *vfsDriver) PrepareLayer(dir string, parent *Info) (ApplyOptions, error) {
	opts := v.applyOptions()
	if parent == nil {
		return opts, nil
	}
	if parent.Driver != VFS {
		return opts, fmt.Errorf("parent snapshot %s was made by the %s driver", parent.ID, parent.Driver)
	}
	// dir exists (empty): copy into it.
	if err := os.Remove(dir); err != nil {
		return opts, err
	}
	co := v.copyOptions()
	co.writableDirs, co.linkFiles = v.rootless, true
	if err := copyTree(parent.FS(), dir, co); err != nil {
		return opts, fmt.Errorf("copy snapshot %s: %w", parent.ID, err)
	}
	return opts, nil
}

func (v *vfsDriver) CreateRootfs(c *Container) error {
	top := c.Top()
	if top == nil {
		if err := os.Mkdir(c.Rootfs(), 0o755); err != nil {
			return fmt.Errorf("create rootfs: %w", err)
		}
		return nil
	}
	if v.rootless && !c.IDMap.Empty() {
		return errors.New("vfs: an id map needs root (or a user namespace)")
	}
	co := v.copyOptions()
	co.idMap = c.IDMap
	if err := copyTree(top.FS(), c.Rootfs(), co); err != nil {
		_ = fsx.RemoveAll(c.Rootfs())
		return fmt.Errorf("create rootfs from snapshot %s: %w", top.ID, err)
	}
	return nil
}

func (v *vfsDriver) RemoveRootfs(c *Container) error {
	if err := fsx.RemoveAll(c.Rootfs()); err != nil {
		return err
	}
	return fsx.RemoveAll(c.State())
}
