package snapshot

import (
	"errors"
	"fmt"
	"os"

	"github.com/strata-oci/strata/internal/userns"
)

// VFS is the name of the copying driver.
const VFS = "vfs"

func init() {
	RegisterDriver(VFS, func(s *Store) (Driver, error) {
		// In a user namespace root can chown only to mapped IDs and
		// cannot make devices: extract as an unprivileged user would.
		return &vfsDriver{rootless: os.Geteuid() != 0 || userns.InNamespace()}, nil
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
type vfsDriver struct{ rootless bool }

func (v *vfsDriver) Name() string { return VFS }

func (v *vfsDriver) PrepareLayer(dir string, parent *Info) (ApplyOptions, error) {
	opts := ApplyOptions{Whiteouts: WhiteoutDelete, Rootless: v.rootless, DropCache: true}
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
	if err := copyTree(parent.FS(), dir, copyOptions{rootless: v.rootless, writableDirs: v.rootless, linkFiles: true}); err != nil {
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
	if err := copyTree(top.FS(), c.Rootfs(), copyOptions{rootless: v.rootless, idMap: c.IDMap}); err != nil {
		_ = RemoveAll(c.Rootfs())
		return fmt.Errorf("create rootfs from snapshot %s: %w", top.ID, err)
	}
	return nil
}

func (v *vfsDriver) RemoveRootfs(c *Container) error {
	if err := RemoveAll(c.Rootfs()); err != nil {
		return err
	}
	return RemoveAll(c.State())
}
