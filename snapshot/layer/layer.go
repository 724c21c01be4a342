// Package layer turns OCI layers into directories and back: the confined
// extractor (tar → directory, whiteouts, hardlinks, xattrs, devices,
// sparse files, rootless owners), the record of a layer's tar-split
// metadata that rebuilds it byte for byte, the merged file list of a
// tree, and the diff of a tree written as a layer (directory → tar).
//
// It knows nothing of stores, drivers or bundles: callers say where to
// extract, who the process is (ApplyOptions) and what a layer's diffID
// is; drivers build Diffs from what they know changed.
package layer

import "errors"

// Errors.
var (
	// ErrUnsafePath means a layer entry tried to reach outside the root.
	ErrUnsafePath = errors.New("path escapes the root")
	// ErrDiffIDMismatch means a layer's uncompressed bytes do not hash to
	// the diffID its image config records.
	ErrDiffIDMismatch = errors.New("layer does not match its diffID")
	// ErrSparseMap means a sparse tar entry's map could not be read back
	// from its headers, or disagrees with the data the entry holds.
	ErrSparseMap = errors.New("bad sparse map")
	// ErrChangedDuringCommit means a file changed while its content was
	// written into a layer: the rootfs was in use.
	ErrChangedDuringCommit = errors.New("file changed while it was committed")
)

// What Extract records of a layer beside its files, in the directory it
// is given (a snapshot's).
const (
	// TarSplitFile holds the layer's tar-split metadata: with the files
	// it rebuilds the exact uncompressed layer. Its lines are tar-split
	// entries, plus "sparse":[[off,len],...] for a sparse file (tar-split
	// itself ignores the field).
	TarSplitFile = "tarsplit.json.gz"
	// ShadowDir holds the files of a layer's entries that a later entry
	// of the same layer replaced or removed (a name given twice, a
	// directory in place of a file, a file in place of its parent
	// directory), named by the entry's number in the layer counted from
	// 0: the tree no longer has them, and a rebuild needs their bytes.
	// For an entry whose name led through a symlink it holds, until the
	// file is replaced, a symlink to the file's real path in the tree.
	// Layers that do neither have none.
	ShadowDir = "shadow"
)

// Whiteout names from the OCI layer spec.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// whiteoutName is the OCI whiteout entry that deletes the path p.
func whiteoutName(p string) string {
	dir, base := split(p)
	if dir == "." {
		return whiteoutPrefix + base
	}
	return dir + "/" + whiteoutPrefix + base
}

// opaqueName is the OCI entry that makes the directory dir opaque.
func opaqueName(dir string) string {
	if dir == "." || dir == "" {
		return whiteoutOpaque
	}
	return dir + "/" + whiteoutOpaque
}

// paxXattr prefixes PAX records that carry extended attributes.
const paxXattr = "SCHILY.xattr."
