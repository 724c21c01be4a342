package layer

import "github.com/strata-oci/strata/snapshot/ids"

// WhiteoutMode says what the extractor does with whiteout entries.
type WhiteoutMode int

const (
	// WhiteoutDelete removes what a whiteout names and, for an opaque
	// whiteout, what lower layers put in the directory (a tree that
	// holds every layer below, as vfs keeps).
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

// ApplyOptions tell the extractor how to write a layer and who writes
// it. The zero value is root in the initial user namespace applying a
// layer on a tree that holds every layer below.
type ApplyOptions struct {
	Whiteouts  WhiteoutMode
	Whiteouter Whiteouter
	// Lower lists the parent chain's layer directories, topmost first,
	// when the layer is extracted into an empty directory (overlay): a
	// hardlink to a file of a lower layer is copied up from there, and a
	// directory created implicitly takes its metadata from there.
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
	Owners *ids.Map
	// UID and GID are the owner a file this process creates gets (its
	// effective IDs, as it sees them): a file whose entry asks for that
	// owner is not chowned. Zero: root.
	UID, GID int
	// IDMap shifts ownership from the image's IDs to host IDs.
	IDMap *ids.Map
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
