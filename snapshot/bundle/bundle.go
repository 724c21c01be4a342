// Package bundle makes and changes runtime-spec bundles from the images
// of a layout: Unpack makes a bundle (a rootfs from the image's
// snapshots, extracted into a snapshot store as needed, and a
// config.json), Commit turns what changed in a bundle's rootfs into a
// new layer and image, Open mounts and unmounts a bundle's rootfs, and
// GC and Remove keep the store's snapshots that bundles and the layouts
// they came from use.
//
// It picks the snapshot driver by name (vfs, overlay) from a small table
// and uses it only through snapshot.Driver.
//
// An unpacked bundle DIR holds:
//
//	DIR/config.json              the runtime spec (package spec)
//	DIR/rootfs/                  the root file system, made by the driver
//	DIR/.strata-unpack.json      the Record, written last
//	DIR/.strata-unpacking.json   while an unpack writes DIR (ProgressFile)
//	DIR/.strata/                 the drivers' state (overlay: upper, work)
//
// and the store keeps, beside its snapshots, the gc roots:
//
//	ROOT/containers/<hash>.json  one Record per unpacked bundle
//	ROOT/layouts.json            layouts images were unpacked from
package bundle

import "errors"

// Files of a bundle and, beside the snapshots, of the store.
const (
	SpecFile   = "config.json"
	RecordFile = ".strata-unpack.json"
	// CommitLock, in a bundle's state directory, serialises commits of
	// one bundle.
	CommitLock = "commit.lock"

	ContainersDir = "containers"
	LayoutsFile   = "layouts.json"
)

// ProgressFile marks a bundle directory an unpack is writing. It is the
// first thing an unpack puts into the directory and the last it removes
// (after RecordFile is written), and its writer holds an exclusive flock
// on it throughout: a marker nobody holds was left by a killed unpack,
// and everything else in the directory was put there by that unpack.
const ProgressFile = ".strata-unpacking.json"

// Errors of bundles.
var (
	// ErrNotUnpacked means a directory is not a bundle strata unpacked.
	ErrNotUnpacked = errors.New("not a strata bundle")
	// ErrUnknownDriver means no snapshot driver has a name.
	ErrUnknownDriver = errors.New("unknown snapshot driver")
	// ErrParentGone means the image a bundle was unpacked from (or last
	// committed as) is no longer in its layout, so a commit has nothing
	// to build on.
	ErrParentGone = errors.New("bundle's image is no longer in its layout")
	// ErrBundleBusy means another process is unpacking into the
	// directory.
	ErrBundleBusy = errors.New("another strata unpack is writing it")
	// ErrBundleNotEmpty means the directory holds files strata did not
	// put there, or a finished bundle.
	ErrBundleNotEmpty = errors.New("directory is not empty")
	// ErrBundleInterrupted means the directory holds what a killed
	// unpack of another image left: unpacking that image again finishes
	// it, or the directory can be removed.
	ErrBundleInterrupted = errors.New("directory holds an interrupted unpack of another image")
)
