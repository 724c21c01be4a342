// Package vfs is the copying snapshot driver (Driver, a
// snapshot.Driver): plain directories on any file system, for any user.
// Each layer is applied to a copy of its parent whose files are
// hardlinks; a bundle's rootfs is a real copy (cloned, or copied by
// extents with holes kept), built during a cold unpack from the same
// decompressed layer streams (stream.go). It holds the one tree copier
// (copy.go) and the diff of a rootfs against its snapshot's file list
// (diff.go).
package vfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// Name is the name of the copying driver.
const Name = "vfs"

// ctimeSlack widens the window of files a diff compares: the kernel
// stamps ctimes from a coarse clock that may lag the time a bundle
// records by a tick (10 ms at HZ=100). Files copied in that window are
// compared, content too, for nothing, so it stays small.
const ctimeSlack = 50 * time.Millisecond

// Driver keeps whole root file systems as plain directories: it works
// on any file system and for any user. Each layer is applied on a copy of
// its parent whose directories are new and whose other files are
// hardlinks to the parent's (safe because extraction replaces files and
// never writes into one); a rootfs is a real copy, cloned where the file
// system can, else copied with copy_file_range, holes kept. When Unpack
// has layers to extract, it builds the rootfs from their streams instead
// (vfs_stream.go) and CreateRootfs is not called.
type Driver struct {
	rootless bool
	// owners is the mapping snapshots are written under, m what it
	// makes of image IDs for this process (layer.ApplyOptions.Owners).
	owners, m *ids.Map
	// keepOwners: rootless in a user namespace, where copies keep the
	// owners the namespace maps (outside one, all files are the user's).
	keepOwners bool
	// uid and gid are the owner files this process creates get.
	uid, gid int
}

// New returns the vfs driver for the snapshots of s written under owners
// (see snapshot.Info.Owners), which s's process must be able to write.
func New(s *snapshot.Store, owners *ids.Map) (*Driver, error) {
	m, err := s.Options().Writer(owners)
	if err != nil {
		return nil, err
	}
	// In a user namespace root can chown only to mapped IDs and cannot
	// make devices: extract as an unprivileged user would, giving the
	// owners the namespace maps.
	return &Driver{
		rootless: s.Options().Rootless, owners: owners, m: m,
		keepOwners: s.Options().Rootless && s.Options().UserNS != nil,
		uid:        s.Options().UID, gid: s.Options().GID,
	}, nil
}

func (v *Driver) Name() string { return Name }

func (v *Driver) Owners() *ids.Map { return v.owners }

// Stacked is false: each snapshot holds the whole tree up to its layer.
func (v *Driver) Stacked() bool { return false }

// copyOptions is how the driver copies its trees.
func (v *Driver) copyOptions() copyOptions {
	return copyOptions{rootless: v.rootless, keepOwners: v.keepOwners, uid: v.uid, gid: v.gid}
}

// applyOptions is how a layer is applied on a tree of the driver's.
func (v *Driver) applyOptions() layer.ApplyOptions {
	return layer.ApplyOptions{Whiteouts: layer.WhiteoutDelete, Rootless: v.rootless, Owners: v.m, UID: v.uid, GID: v.gid}
}

// PrepareLayer fills dir with a copy of parent's tree whose files are
// hardlinks, for the layer to be applied on.
func (v *Driver) PrepareLayer(ctx context.Context, dir string, parent *snapshot.Info) (layer.ApplyOptions, error) {
	opts := v.applyOptions()
	opts.DropCache = true
	if parent == nil {
		return opts, nil
	}
	if parent.Driver != Name {
		return opts, fmt.Errorf("parent snapshot %s was made by the %s driver", parent.ID, parent.Driver)
	}
	// dir exists (empty): copy into it.
	if err := os.Remove(dir); err != nil {
		return opts, err
	}
	co := v.copyOptions()
	co.writableDirs, co.linkFiles = v.rootless, true
	if err := copyTree(ctx, parent.FS(), dir, co); err != nil {
		return opts, fmt.Errorf("copy snapshot %s: %w", parent.ID, err)
	}
	return opts, nil
}

// Usage comes from the file list: a vfs tree is its list, no walk
// needed.
func (v *Driver) Usage(_ string, files layer.Files) (int64, int64, error) {
	size, count := files.Usage()
	return size, count, nil
}

// CheckIDMap accepts any map here; CreateRootfs refuses one a rootless
// process cannot give.
func (v *Driver) CheckIDMap(*ids.Map) error { return nil }

func (v *Driver) CreateRootfs(ctx context.Context, c *snapshot.Container) error {
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
	if err := copyTree(ctx, top.FS(), c.Rootfs(), co); err != nil {
		_ = fsx.RemoveAll(c.Rootfs())
		return fmt.Errorf("create rootfs from snapshot %s: %w", top.ID, err)
	}
	return nil
}

func (v *Driver) RemoveRootfs(c *snapshot.Container) error {
	if err := fsx.RemoveAll(c.Rootfs()); err != nil {
		return err
	}
	return fsx.RemoveAll(c.State())
}

// NeedsNamespace: a vfs rootfs is a plain directory, usable anywhere its
// files' owners are.
func (v *Driver) NeedsNamespace() bool { return snapshot.NeedsNamespace(v.owners) }

// Mount: a vfs rootfs is a plain directory.
func (v *Driver) Mount(*snapshot.Container) error { return snapshot.ErrNoMount }

// Unmount: a vfs rootfs is a plain directory.
func (v *Driver) Unmount(*snapshot.Container) error { return snapshot.ErrNoMount }

// Recover has nothing to do: Rebase leaves nothing half-done.
func (v *Driver) Recover(*snapshot.Container) error { return nil }

// Diff compares the rootfs with the top snapshot's file list (see
// diffVFS); files not changed since unpacked are not read.
func (v *Driver) Diff(ctx context.Context, c *snapshot.Container, own layer.Ownership, unpacked time.Time) (*layer.Diff, error) {
	files, lower := layer.Files{}, ""
	if top := c.Top(); top != nil {
		var err error
		if files, err = top.ReadFiles(); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", top.ID, err)
		}
		lower = top.FS()
	}
	var cutoff time.Time
	if !unpacked.IsZero() {
		cutoff = unpacked.Add(-ctimeSlack)
	}
	return diffVFS(ctx, c.Rootfs(), lower, files, cutoff, own)
}

// Rebase: the rootfs already holds the new layer's files; only the
// mtimes the layer clamped are put in line.
func (v *Driver) Rebase(_ context.Context, c *snapshot.Container, r snapshot.Rebase) error {
	if r.Clamp != nil {
		if err := r.Diff.FixClamped(c.Rootfs(), *r.Clamp); err != nil {
			return err
		}
	}
	return r.Save()
}

// parentChain is parent's chain ID, "" for no parent.
func parentChain(parent *snapshot.Info) digest.Digest {
	if parent == nil {
		return ""
	}
	return parent.ChainID
}
