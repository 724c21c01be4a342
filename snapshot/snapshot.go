// Package snapshot is the store of extracted image layers, keyed by
// driver, ID mapping and chain ID, and the Driver interface that lays
// snapshots out and makes root file systems from them.
//
// # Store layout
//
// A store is a directory ROOT (DefaultRoot: /var/lib/strata for root and
// $XDG_DATA_HOME/strata, i.e. ~/.local/share/strata, for other users):
//
//	ROOT/lock                      flock: shared by unpack and commit,
//	                               exclusive by gc, rm and Open's move of an
//	                               old layout
//	ROOT/snapshots/<key>/          one driver's snapshots written under one ID
//	                               mapping: <key> is the driver's name ("vfs",
//	                               "overlay") for the image's owners as they
//	                               are, else the name, a dot and a short hash
//	                               of the mapping (Info.Owners, Key)
//	ROOT/snapshots/<key>/<hex>/    one complete snapshot; <hex> is the hex of
//	                               the layer's chain ID, so images that share
//	                               layers share their extracted files
//	    fs/                        the files: the whole tree up to this layer,
//	                               or this layer alone (a Stacked driver's)
//	    meta.json                  Info
//	    files.jsonl.gz             the merged tree up to this layer, one
//	                               layer.Entry (JSON) per line, sorted by path
//	    tarsplit.json.gz           the layer's tar-split record: with fs/ it
//	                               rebuilds the exact uncompressed layer
//	    shadow/<n>                 only when needed (see layer.ShadowDir)
//	ROOT/tmp/                      snapshots being built, renamed into
//	                               snapshots/ when complete; gc empties it
//
// Beside them the caller may keep its gc roots in ROOT (the bundle
// package: containers/ and layouts.json): the store asks for them through
// Roots and opens nothing else.
//
// Open moves the snapshots of a store laid out by an earlier strata
// (ROOT/snapshots/<hex>) into this layout (migrate.go).
//
// # Who the process is
//
// StoreOptions say it (root; root of a user namespace and its mapping; a
// user outside any): nothing in this package looks at the process's IDs,
// its namespaces or its environment.
//
// # Drivers
//
// A Driver decides how a layer is laid out in a snapshot and how a rootfs
// is made from a chain of snapshots: snapshot/vfs copies, the overlay
// package mounts. The store and the bundle code use drivers through the
// interface alone; the bundle package picks one by name.
package snapshot

import (
	"errors"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// Sentinel errors.
var (
	// ErrNotFound means no snapshot has the given ID.
	ErrNotFound = errors.New("snapshot not found")
	// ErrInUse means a snapshot is still used by an unpacked bundle.
	ErrInUse = errors.New("snapshot in use")
	// ErrNoMount means a bundle's rootfs is a plain directory (vfs):
	// there is nothing to mount.
	ErrNoMount = errors.New("bundle does not use the overlay driver: its rootfs is a plain directory")
	// ErrWrongDriver means the snapshot under a driver's key was made
	// by another driver: the store was changed by hand.
	ErrWrongDriver = errors.New("snapshot was made by another driver")
)

// File names inside the store, a snapshot and a bundle.
const (
	SnapshotsDir = "snapshots"
	TmpDir       = "tmp"
	LockFile     = "lock"

	FSDir     = "fs"
	MetaFile  = "meta.json"
	FilesFile = "files.jsonl.gz"

	// A bundle's rootfs and the drivers' private state in it.
	RootfsDir   = "rootfs"
	BundleState = ".strata"
)

// Info is a snapshot's meta.json.
type Info struct {
	// ID is the hex of ChainID: the snapshot's directory name.
	ID      string        `json:"id"`
	ChainID digest.Digest `json:"chainID"`
	// Parent is the parent snapshot's chain ID, empty for a base layer.
	Parent digest.Digest `json:"parent,omitempty"`
	DiffID digest.Digest `json:"diffID"`
	// Layer is the blob the snapshot was extracted from; another image
	// may have the same diffID compressed differently.
	Layer  digest.Digest `json:"layer,omitempty"`
	Driver string        `json:"driver"`
	// Owners is the ID mapping the files were written under: image IDs
	// onto the host IDs they were given (see StoreOptions); empty for the
	// image's owners as they are. Owners the mapping lacks are kept in
	// the user.rootlesscontainers xattr. Absent only in snapshots of an
	// earlier strata, until Open records it.
	Owners *ids.Map `json:"owners,omitempty"`
	// Size is the apparent size of the files in fs/ (the unpacked size).
	Size    int64     `json:"size"`
	Files   int64     `json:"files"`
	Created time.Time `json:"created"`

	// Dir is the snapshot's directory; not stored.
	Dir string `json:"-"`
	// key is the directory under ROOT/snapshots holding it (ownersKey).
	key string

	// files is the file list, in memory, of a snapshot Ensure just
	// made: the next Ensure on top of it takes it instead of reading
	// FilesFile back.
	files layer.Files
	// pending is set while the snapshot waits in its staging directory
	// (Store.ensure with later).
	pending *publication
}

// FS is the directory holding the snapshot's files.
func (i *Info) FS() string { return filepath.Join(i.Dir, FSDir) }

// Key is the store key the snapshot is kept under: its driver's name,
// followed for snapshots written under an ID mapping by a short hash of
// it (every driver and mapping has its own snapshots).
func (i *Info) Key() string { return i.key }

// Name is KEY/ID, which names the snapshot in a store unambiguously
// (Store.Get takes it).
func (i *Info) Name() string { return i.key + "/" + i.ID }
