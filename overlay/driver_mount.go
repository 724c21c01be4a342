package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/idmap"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// upper is the bundle's upper directory: what changed in the rootfs.
func (o *Driver) upper(c *snapshot.Container) string { return filepath.Join(c.State(), UpperDir) }

// work is the bundle's overlay work directory.
func (o *Driver) work(c *snapshot.Container) string { return filepath.Join(c.State(), WorkDir) }

// CreateRootfs creates a fresh upper and work directory for c and mounts
// the rootfs. The upper directory's root takes the owner, mode and times
// of the top layer's root, since overlay shows the upper root's metadata
// for the rootfs's "/".
//
// With an id map the layers are mounted through idmapped clones (see
// Mount), so nothing is copied: every map shares the one set of
// snapshots. The upper directory then holds host IDs, as a vfs rootfs
// does, and commit shifts them back.
func (o *Driver) CreateRootfs(_ context.Context, c *snapshot.Container) (err error) {
	top := c.Top()
	if top == nil {
		return fmt.Errorf("overlay rootfs in %s: image has no layers", c.Dir)
	}
	if !c.IDMap.Empty() {
		if c.Rootless || o.s.Options().Rootless {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, ErrIDMapNeedsRoot)
		}
		if err := c.IDMap.Validate(); err != nil {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
		}
		if err := checkMapped(top, c.IDMap); err != nil {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
		}
	}
	upper, work := o.upper(c), o.work(c)
	for _, d := range []string{upper, work} {
		if _, err := os.Lstat(d); err == nil {
			return fmt.Errorf("overlay rootfs in %s: %s exists already", c.Dir, d)
		}
	}
	if err := os.MkdirAll(c.State(), 0o700); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	defer func() {
		if err != nil {
			_ = idmap.DetachAll(filepath.Join(c.State(), IDMapDir))
			_ = fsx.RemoveAll(upper)
			_ = fsx.RemoveAll(work)
		}
	}()
	if err := os.Mkdir(upper, 0o755); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	if err := copyRootMetaShifted(top.FS(), upper, c.IDMap); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	return o.Mount(c)
}

// copyRootMetaShifted gives dst the owner (shifted by m to host IDs),
// mode and times of src.
func copyRootMetaShifted(src, dst string, m *ids.Map) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "stat", Path: src, Err: err}
	}
	uid, gid, err := m.ToHost(int(st.Uid), int(st.Gid))
	if err != nil {
		return fmt.Errorf("owner of %s: %w", src, err)
	}
	if err := os.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "set times", Path: dst, Err: err}
	}
	return nil
}

// Mount mounts c's rootfs over its existing upper and work directories:
// after a reboot, or after Unmount. With an id map each layer is mounted
// through an idmapped clone of its directory: detached where the kernel
// allows (6.15+), else attached for the time of the mount under
// DIR/.strata/idmap.
func (o *Driver) Mount(c *snapshot.Container) (err error) {
	for _, d := range []string{o.upper(c), o.work(c)} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return fmt.Errorf("mount %s: missing overlay directory %s (was the bundle unpacked with the overlay driver?)", c.Rootfs(), d)
		}
	}
	if err := os.MkdirAll(c.Rootfs(), 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	mounted, err := IsMounted(c.Rootfs())
	if err != nil {
		return err
	}
	if mounted {
		return o.checkMounted(c)
	}
	low, err := o.lowers(c.Top())
	if err != nil {
		return err
	}
	if c.IDMap.Empty() {
		return Mount(c.Rootfs(), Options{Lower: low, Upper: o.upper(c), Work: o.work(c), Xattrs: o.x})
	}
	if c.Rootless || o.s.Options().Rootless {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrIDMapNeedsRoot)
	}
	// Mount points of a killed earlier mount go first.
	attachDir := filepath.Join(c.State(), IDMapDir)
	if err := idmap.DetachAll(attachDir); err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	mounts, err := idmappedLayers(low, c.IDMap)
	if err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	defer mounts.Close()
	lower := mounts.Paths()
	if !detachedLayers() {
		paths, detach, aerr := mounts.Attach(attachDir)
		if aerr != nil {
			return fmt.Errorf("mount %s: %w", c.Rootfs(), aerr)
		}
		// Overlay holds its own clones of its layers once mounted.
		defer func() {
			if derr := detach(); derr != nil && err == nil {
				err = fmt.Errorf("mount %s: %w", c.Rootfs(), derr)
			}
		}()
		lower = paths
	}
	if err := Mount(c.Rootfs(), Options{Lower: lower, Upper: o.upper(c), Work: o.work(c), Xattrs: o.x}); err != nil {
		return fmt.Errorf("%w: %w (layers shifted by an id map are idmapped mounts, which overlay takes from Linux 5.19 on)", ErrIDMappedLayers, err)
	}
	return nil
}

// checkMounted says what the overlay mounted on c's rootfs is:
// ErrAlreadyMounted when it is over c's own upper directory (or the kernel
// does not say), ErrMountedElsewhere when it is another.
func (o *Driver) checkMounted(c *snapshot.Container) error {
	upper, err := mountedUpper(c.Rootfs())
	if err != nil || upper == "" {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrAlreadyMounted)
	}
	mine, err1 := os.Stat(o.upper(c))
	theirs, err2 := os.Stat(upper)
	if err1 == nil && err2 == nil && !os.SameFile(mine, theirs) {
		return fmt.Errorf("mount %s: %w (it is over %s)", c.Rootfs(), ErrMountedElsewhere, upper)
	}
	return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrAlreadyMounted)
}

// detachedLayers says whether overlay takes detached idmapped mounts as
// layers; tests turn it off to try the attached form.
var detachedLayers = idmap.DetachedLayers

// Unmount unmounts c's rootfs and keeps the upper and work directories.
func (o *Driver) Unmount(c *snapshot.Container) error {
	return Unmount(c.Rootfs())
}

// RemoveRootfs unmounts c's rootfs if it is mounted and removes it with
// the upper and work directories.
func (o *Driver) RemoveRootfs(c *snapshot.Container) error {
	if err := Unmount(c.Rootfs()); err != nil && !errors.Is(err, ErrNotMounted) && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := idmap.DetachAll(filepath.Join(c.State(), IDMapDir)); err != nil {
		return fmt.Errorf("remove overlay rootfs of %s: %w", c.Dir, err)
	}
	for _, d := range []string{o.upper(c), o.work(c), c.Rootfs()} {
		if err := fsx.RemoveAll(d); err != nil {
			return fmt.Errorf("remove overlay rootfs of %s: %w", c.Dir, err)
		}
	}
	return nil
}

// CheckIDMap says whether this process can mount the store's layers
// shifted by m: it must be root outside any user namespace, and the
// store's file system must take idmapped mounts (tried on ROOT/tmp).
func (o *Driver) CheckIDMap(m *ids.Map) error {
	if m.Empty() {
		return nil
	}
	if o.s.Options().Rootless {
		return ErrIDMapNeedsRoot
	}
	mounts, err := idmappedLayers([]string{filepath.Join(o.s.Root(), snapshot.TmpDir)}, m)
	if err != nil {
		return fmt.Errorf("overlay with an id map in store %s: %w", o.s.Root(), err)
	}
	mounts.Close()
	return nil
}

// idmappedLayers clones each layer directory as an idmapped mount that
// shows the image's owners as m's host IDs. Closing the clones leaves a
// mounted overlay its own.
func idmappedLayers(dirs []string, m *ids.Map) (*idmap.Mounts, error) {
	conv := func(rs []ids.Range) []idmap.Range {
		out := make([]idmap.Range, len(rs))
		for i, r := range rs {
			out[i] = idmap.Range{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Size}
		}
		return out
	}
	return idmap.Clone(dirs, conv(m.UIDs), conv(m.GIDs))
}

// checkMapped makes sure every owner of the image up to top has a host
// ID under m: an idmapped mount would show the others as the overflow
// ID (nobody), and the vfs driver refuses them too.
func checkMapped(top *snapshot.Info, m *ids.Map) error {
	files, err := top.ReadFiles()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", top.ID, err)
	}
	var bad *layer.Entry
	var badErr error
	for _, e := range files {
		if _, _, err := m.ToHost(e.UID, e.GID); err != nil && (bad == nil || e.Path < bad.Path) {
			bad, badErr = e, err
		}
	}
	if bad != nil {
		return fmt.Errorf("%s is owned by %d:%d: %w", path.Join("/", bad.Path), bad.UID, bad.GID, badErr)
	}
	return nil
}
