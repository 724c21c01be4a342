package snapshot

import (
	"context"
	"path/filepath"
	"time"

	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// Driver lays out snapshots and makes root file systems from them. The
// store and the bundle code use drivers through this interface alone:
// what differs between drivers is asked of them, never told by name.
type Driver interface {
	// Name is the name the driver is chosen by ("vfs", "overlay").
	Name() string
	// Owners is the ID mapping the driver writes snapshots under (see
	// Info.Owners); each driver and mapping has its own snapshots.
	Owners() *ids.Map
	// Stacked says whether a snapshot's files are its layer alone, over
	// its parent's (which must then stay in place while it is used),
	// rather than the whole tree.
	Stacked() bool
	// PrepareLayer fills dir, a new empty directory that becomes the
	// snapshot's fs/, so that a layer can be applied on top of parent
	// (nil for a base layer); it returns how to apply the layer there.
	PrepareLayer(ctx context.Context, dir string, parent *Info) (layer.ApplyOptions, error)
	// Usage is the apparent size and the entry count of a snapshot's
	// files: fsDir holds them, files lists the whole tree up to them.
	Usage(fsDir string, files layer.Files) (size, count int64, err error)

	// CheckIDMap says, before any layer is extracted, whether the driver
	// can make a rootfs whose owners are shifted by m.
	CheckIDMap(m *ids.Map) error
	// StreamRootfs returns what builds the rootfs of a bundle, at the
	// path rootfs, from the streams of the layers an unpack extracts,
	// or nil when the driver makes it from the snapshots afterwards
	// (CreateRootfs).
	StreamRootfs(ctx context.Context, s *Store, rootfs string, m *ids.Map, layers int) RootfsStream
	// CreateRootfs makes c.Rootfs() a writable root file system holding
	// c.Chain's top snapshot. It must leave nothing behind on error.
	CreateRootfs(ctx context.Context, c *Container) error
	// RemoveRootfs undoes CreateRootfs (unmounting if needed) and
	// removes the rootfs and the driver's state in the bundle.
	RemoveRootfs(c *Container) error
	// NeedsNamespace says whether a rootfs the driver made in a user
	// namespace is usable only there (a mount lives in its namespace;
	// files may have owners only its mapping gives).
	NeedsNamespace() bool
	// Mount mounts c's rootfs again over its kept changes (after a
	// reboot or Unmount); Unmount unmounts it and keeps them. A driver
	// whose rootfs is a plain directory returns ErrNoMount.
	Mount(c *Container) error
	Unmount(c *Container) error

	// Recover puts right what an interrupted Rebase left in c.
	Recover(c *Container) error
	// Diff returns what changed in c's rootfs since it was made, or
	// last rebased, at unpacked, with owners read back through own.
	Diff(ctx context.Context, c *Container, own layer.Ownership, unpacked time.Time) (*layer.Diff, error)
	// Rebase moves c's rootfs onto the chain its own changes were just
	// committed as (see Rebase).
	Rebase(ctx context.Context, c *Container, r Rebase) error
}

// Rebase is what a driver needs to move a bundle onto the layer
// committed from its rootfs.
type Rebase struct {
	// Chain is the bundle's new chain: its old one and the snapshot of
	// the committed layer.
	Chain []*Info
	// Diff is what was committed; Clamp the time its mtimes were capped
	// at (nil: none).
	Diff  *layer.Diff
	Clamp *time.Time
	// Save records the move (the bundle's record). The driver calls it
	// once the rootfs shows the new chain, or at the point from which
	// the rootfs is valid over both chains.
	Save func() error
}

// RootfsStream builds a bundle's rootfs from the layer streams an unpack
// extracts (Driver.StreamRootfs).
type RootfsStream interface {
	// Layer returns l, which goes on parent, with its stream feeding
	// the rootfs too when Ensure reads it.
	Layer(parent *Info, l Layer) Layer
	// Settle ends the feed of the last layer once Ensure returned.
	Settle()
	// Create makes c's rootfs: the streamed tree when it holds c's top
	// snapshot, else the driver's CreateRootfs.
	Create(ctx context.Context, c *Container) error
	// Stop abandons the rootfs (the unpack failed) and waits for the
	// goroutine building it.
	Stop()
}

// Container is what a driver needs to know about a bundle.
type Container struct {
	// Dir is the bundle directory.
	Dir string
	// Chain is the image's snapshots, base first.
	Chain []*Info
	// Rootless is set when strata runs without root.
	Rootless bool
	// IDMap shifts ownership in the rootfs (nil: identity).
	IDMap *ids.Map
}

// Rootfs is the bundle's root file system directory.
func (c *Container) Rootfs() string { return filepath.Join(c.Dir, RootfsDir) }

// State is the bundle's private directory for driver state.
func (c *Container) State() string { return filepath.Join(c.Dir, BundleState) }

// Top is the snapshot the rootfs shows.
func (c *Container) Top() *Info {
	if len(c.Chain) == 0 {
		return nil
	}
	return c.Chain[len(c.Chain)-1]
}
