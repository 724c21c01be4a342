// Package snapshot keeps extracted image layers in a snapshot store and
// turns them into working containers (runtime-spec bundles).
//
// # Store layout
//
// A store is a directory ROOT (by default /var/lib/strata for root and
// $XDG_DATA_HOME/strata, i.e. ~/.local/share/strata, for other users):
//
//	ROOT/lock                      flock: shared by unpack, exclusive by gc and rm
//	ROOT/snapshots/<key>/          one driver's snapshots written under one ID
//	                               mapping: <key> is the driver's name ("vfs",
//	                               "overlay") for the image's owners as they
//	                               are, else the name, a dot and a short hash
//	                               of the mapping (Info.Owners)
//	ROOT/snapshots/<key>/<hex>/    one complete snapshot; <hex> is the hex of
//	                               the layer's chain ID, so images that share
//	                               layers share their extracted files
//	    fs/                        the files: with vfs the whole root file
//	                               system up to this layer; with overlay only
//	                               this layer, whiteouts converted for overlayfs
//	    meta.json                  Info
//	    files.jsonl.gz             the merged tree up to this layer, one Entry
//	                               (JSON) per line, sorted by path: the
//	                               image's own view of every file (owners
//	                               before any rootless or id-map translation,
//	                               devices even where fs/ holds placeholders);
//	                               commit diffs a rootfs against it
//	    tarsplit.json.gz           tar-split metadata of the layer: with fs/
//	                               it rebuilds the exact uncompressed layer
//	    shadow/<n>                 only when needed: the file of entry n that a
//	                               later entry of the layer replaced, or a
//	                               symlink to where in fs/ entry n's file is
//	                               (its name led through a symlink)
//	ROOT/tmp/                      snapshots being built, renamed into
//	                               snapshots/ when complete; gc empties it
//	ROOT/containers/<hash>.json    one Record per unpacked bundle (gc roots)
//	ROOT/layouts.json              layouts images were unpacked from (gc roots)
//
// Open moves the snapshots of a store laid out by an earlier strata
// (ROOT/snapshots/<hex>) into this layout (migrate.go).
//
// An unpacked bundle DIR holds DIR/config.json, DIR/rootfs and
// DIR/.strata-unpack.json (a Record); drivers may keep private state in
// DIR/.strata/ (overlay: upper and work directories).
//
// # Drivers
//
// A Driver decides how a layer is laid out in a snapshot and how a rootfs
// is made from a chain of snapshots. vfs (this package) copies: each layer
// is applied to a copy of its parent (reflink or copy_file_range where the
// file system offers it), and a rootfs is a copy of the top snapshot. The
// overlay package registers "overlay": each layer is extracted into an
// empty directory with whiteouts converted to overlayfs's form (through
// ApplyOptions.Whiteouter), and a rootfs is an overlay mount.
package snapshot

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Sentinel errors.
var (
	// ErrNotFound means no snapshot has the given ID.
	ErrNotFound = errors.New("snapshot not found")
	// ErrInUse means a snapshot is still used by an unpacked bundle.
	ErrInUse = errors.New("snapshot in use")
	// ErrDiffIDMismatch means a layer's uncompressed bytes do not hash to
	// the diffID its image config records.
	ErrDiffIDMismatch = errors.New("layer does not match its diffID")
	// ErrUnknownDriver means no driver is registered under a name.
	ErrUnknownDriver = errors.New("unknown snapshot driver")
	// ErrUnsafePath means a layer entry tried to reach outside the root.
	ErrUnsafePath = errors.New("path escapes the root")
	// ErrNotUnpacked means a directory is not a bundle strata unpacked.
	ErrNotUnpacked = errors.New("not a strata bundle")
	// ErrInterrupted means work was abandoned on request (a signal).
	ErrInterrupted = errors.New("interrupted")
)

// File names inside the store, a snapshot and a bundle.
const (
	SnapshotsDir  = "snapshots"
	TmpDir        = "tmp"
	ContainersDir = "containers"
	LayoutsFile   = "layouts.json"
	LockFile      = "lock"

	FSDir        = "fs"
	MetaFile     = "meta.json"
	FilesFile    = "files.jsonl.gz"
	TarSplitFile = "tarsplit.json.gz"

	RootfsDir   = "rootfs"
	SpecFile    = "config.json"
	RecordFile  = ".strata-unpack.json"
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
	Owners *IDMap `json:"owners,omitempty"`
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
	files Files
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

// WhiteoutMode says what the extractor does with whiteout entries.
type WhiteoutMode int

const (
	// WhiteoutDelete removes what a whiteout names and, for an opaque
	// whiteout, what lower layers put in the directory (vfs).
	WhiteoutDelete WhiteoutMode = iota
	// WhiteoutConvert hands whiteouts to ApplyOptions.Whiteouter, which
	// writes the marker its file system understands (overlay).
	WhiteoutConvert
)

// Whiteouter writes whiteout markers in WhiteoutConvert mode. It gets
// file descriptors, never paths: dirfd is an O_PATH descriptor of a
// directory already resolved inside the layer root, so implementations
// must stay fd-relative (unix.Mknodat(dirfd, base, ...), or
// unix.Lsetxattr on "/proc/self/fd/<dirfd>" for the directory itself).
type Whiteouter interface {
	// Whiteout marks base in dirfd as deleted (overlayfs: a 0:0
	// character device). Nothing exists at base when it is called.
	Whiteout(dirfd int, base string) error
	// Opaque marks the directory dirfd as hiding what lower layers hold
	// in it (overlayfs: the trusted. or user.overlay.opaque xattr).
	Opaque(dirfd int) error
}

// ApplyOptions tell the extractor how to write a layer.
type ApplyOptions struct {
	Whiteouts  WhiteoutMode
	Whiteouter Whiteouter
	// Lower lists the parent chain's snapshot file directories, topmost
	// first, when the layer is extracted into an empty directory
	// (overlay): a hardlink to a file of a lower layer is copied up from
	// there, and a directory created implicitly takes its metadata from
	// there.
	Lower []string
	// Rootless means the extractor is not root of the initial user
	// namespace: device nodes become empty regular files (the file list
	// still records them as devices), xattrs it may not set are left to
	// the file list, and files get only the owners Owners maps.
	Rootless bool
	// Owners, with Rootless, maps the image IDs this process can give
	// files onto the IDs it gives them (as it sees them: the IDs of its
	// user namespace). A file whose owner it lacks gets what Owners gives
	// the image's root and keeps its owner in the user.rootlesscontainers
	// xattr (for a uid or gid Owners maps, the xattr says "as the file
	// is"). nil: no owner is applied at all, every file keeps what its
	// creator gave it, owners all in the xattr.
	Owners *IDMap
	// IDMap shifts ownership from the image's IDs to host IDs.
	IDMap *IDMap
	// Done, when closed, makes the extraction stop with ErrInterrupted
	// at the next entry (nil: never).
	Done <-chan struct{}
	// XattrName, when set, gives the name a layer's xattr is stored
	// under. Overlay reads its own namespace (trusted.overlay.*, or
	// user.overlay.* with userxattr) as metadata, so an image xattr there
	// must be stored escaped, or an image could mark its own directories
	// opaque or redirected by an xattr instead of a whiteout.
	XattrName func(name string) string
	// DropCache gives back the page cache of the files written, once
	// they are on disk (vfs: the snapshot is a cold second copy).
	DropCache bool
}

// Driver lays out snapshots and makes root file systems from them.
type Driver interface {
	// Name is the name users pass to --driver.
	Name() string
	// Owners is the ID mapping the driver writes snapshots under (see
	// Info.Owners); each driver and mapping has its own snapshots.
	Owners() *IDMap
	// PrepareLayer fills dir, a new empty directory that becomes the
	// snapshot's fs/, so that a layer can be applied on top of parent
	// (nil for a base layer); it returns how to apply the layer there.
	PrepareLayer(dir string, parent *Info) (ApplyOptions, error)
	// CreateRootfs makes c.Rootfs() a writable root file system holding
	// c.Chain's top snapshot. It must leave nothing behind on error.
	CreateRootfs(c *Container) error
	// RemoveRootfs undoes CreateRootfs (unmounting if needed) and
	// removes the rootfs and the driver's state in the bundle.
	RemoveRootfs(c *Container) error
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
	IDMap *IDMap
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

// DriverFactory makes a driver for a store that writes snapshots under
// the ID mapping owners (Info.Owners), which the store's process can
// write.
type DriverFactory func(s *Store, owners *IDMap) (Driver, error)

var (
	driversMu sync.Mutex
	drivers   = map[string]DriverFactory{}
)

// RegisterDriver makes a driver available under name; packages call it
// from init.
func RegisterDriver(name string, f DriverFactory) {
	driversMu.Lock()
	defer driversMu.Unlock()
	drivers[name] = f
}

// Drivers lists the registered driver names.
func Drivers() []string {
	driversMu.Lock()
	defer driversMu.Unlock()
	var out []string
	for n := range drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// NewDriver returns the driver registered as name for store s, which
// writes snapshots the way s's process gives files owners.
func NewDriver(name string, s *Store) (Driver, error) {
	return newDriver(name, s, s.opts.owners())
}

// newDriver returns the driver registered as name for snapshots written
// under owners (a bundle's, which may be another process's).
func newDriver(name string, s *Store, owners *IDMap) (Driver, error) {
	driversMu.Lock()
	f := drivers[name]
	driversMu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("%w %q (have %v)", ErrUnknownDriver, name, Drivers())
	}
	return f(s, owners)
}
