// Package overlay holds what strata needs from the kernel's overlay
// filesystem: mounting a layer chain (however long) with a fresh upper and
// work directory, converting OCI whiteouts into overlay whiteouts when a
// layer is extracted, and walking an upper directory to find what changed
// when a rootfs is committed; and, built on them, the overlay snapshot
// driver (Driver, a snapshot.Driver): each layer extracted once into its
// own snapshot, a bundle's rootfs an overlay mount of the chain over the
// bundle's own upper directory, swapped for a fresh one when the bundle
// is committed.
//
// Overlay keeps its own metadata in extended attributes. As root in the
// initial user namespace they are trusted.overlay.*; in a user namespace
// only user.overlay.* can be written, and the mount needs the userxattr
// option. Xattrs selects which form a layer, an upper directory and a
// mount use; a snapshot must keep to one form throughout.
//
// Mounts never rely on redirect_dir or metacopy (both are off), so an
// upper directory always holds whole copies of what changed and can be
// turned into an OCI layer by itself.
package overlay

import (
	"errors"
	"strings"
)

// Xattrs selects the extended attribute namespace that overlay metadata
// (opaque directories, and overlay's own bookkeeping) lives in.
type Xattrs int

const (
	// Trusted is the trusted.overlay.* namespace, writable only with
	// CAP_SYS_ADMIN in the initial user namespace.
	Trusted Xattrs = iota
	// User is the user.overlay.* namespace, used with the userxattr mount
	// option inside a user namespace.
	User
)

// Prefix is the xattr name prefix overlay uses in this namespace.
func (x Xattrs) Prefix() string {
	if x == User {
		return "user.overlay."
	}
	return "trusted.overlay."
}

// String names the form for messages.
func (x Xattrs) String() string {
	if x == User {
		return "user"
	}
	return "trusted"
}

// Opaque is the name of the xattr that marks a directory opaque.
func (x Xattrs) Opaque() string { return x.Prefix() + "opaque" }

// OCI whiteout names, as the image-spec defines them.
const (
	// WhiteoutPrefix starts the name of a file that deletes its namesake.
	WhiteoutPrefix = ".wh."
	// WhiteoutMetaPrefix starts names reserved for whiteout metadata
	// (AUFS's .wh..wh.plnk and the like).
	WhiteoutMetaPrefix = ".wh..wh."
	// OpaqueWhiteout in a directory hides everything below it in lower
	// layers.
	OpaqueWhiteout = ".wh..wh..opq"
)

// Errors.
var (
	// ErrUnsupported means overlay cannot be used here: the kernel lacks
	// it, the process lacks the privilege, or the directory's filesystem
	// cannot serve as an upper layer. Callers fall back to copying
	// snapshots.
	ErrUnsupported = errors.New("overlay unavailable")
	// ErrInvalidWhiteout means an OCI whiteout name is malformed.
	ErrInvalidWhiteout = errors.New("invalid whiteout")
	// ErrNotMounted means a directory is not an overlay mount point.
	ErrNotMounted = errors.New("not an overlay mount")
	// ErrRedirect means an upper directory holds a redirect or metacopy
	// entry, which strata never creates and cannot turn into a layer.
	ErrRedirect = errors.New("upper directory relies on redirect_dir or metacopy")
)

// StoredXattr is the name under which a layer file's xattr must be
// written into a layer directory of the given form. Overlay reads its own
// namespace as metadata, so an image xattr in it is stored escaped, the
// way overlay itself (Linux 6.7 and later) stores one set through a mount:
// trusted.overlay.X becomes trusted.overlay.overlay.X.
func StoredXattr(name string, x Xattrs) string {
	if p := x.Prefix(); strings.HasPrefix(name, p) {
		return p + "overlay." + name[len(p):]
	}
	return name
}

// ContentXattr turns the name of an xattr found on an upper (or layer)
// directory entry back into the name a layer carries. ok is false for
// overlay's own metadata, which is not file content.
func ContentXattr(name string, x Xattrs) (content string, ok bool) {
	p := x.Prefix()
	if !strings.HasPrefix(name, p) {
		return name, true
	}
	if rest := name[len(p):]; strings.HasPrefix(rest, "overlay.") {
		return p + rest[len("overlay."):], true
	}
	return "", false
}
