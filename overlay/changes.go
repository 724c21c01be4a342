package overlay

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/strata-oci/strata/internal/fsx"
)

// ChangeKind says how an upper directory entry changes the layers below.
type ChangeKind int

const (
	// Modified is an entry added or changed (an upper directory cannot
	// tell which without reading the lowers, and a layer needs no more).
	// For a directory it carries the directory's metadata only.
	Modified ChangeKind = iota
	// Deleted is a whiteout: the path is gone.
	Deleted
	// OpaqueDir is a directory that replaces the lower one wholesale:
	// in a layer it is the directory entry followed by .wh..wh..opq.
	OpaqueDir
)

func (k ChangeKind) String() string {
	switch k {
	case Deleted:
		return "deleted"
	case OpaqueDir:
		return "opaque"
	}
	return "modified"
}

// Change is one entry of an upper directory.
type Change struct {
	// Path is slash-separated and relative to the upper directory.
	Path string
	Kind ChangeKind
	// Info is the upper entry's Lstat (for Deleted, the whiteout device).
	Info fs.FileInfo
	// Xattrs are the entry's extended attributes as a layer carries
	// them: overlay's own metadata is left out and escaped names are
	// restored. Nil for Deleted.
	Xattrs map[string][]byte
}

// Changes walks the upper directory of an overlay mounted in form x and
// calls fn for every entry, depth first, each directory's entries in name
// order, a directory before what it holds: the order a layer tar needs.
// The upper directory's root itself is not reported. Only the upper
// directory is read, so the cost follows the size of the change.
//
// An entry that relies on redirect_dir or metacopy fails the walk with
// ErrRedirect, as it cannot be turned into a layer without the lowers.
// An error from fn stops the walk and is returned as is.
func Changes(upper string, x Xattrs, fn func(Change) error) error {
	fi, err := os.Lstat(upper)
	if err != nil {
		return fmt.Errorf("walk upper directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("walk upper directory %s: not a directory", upper)
	}
	return walkUpper(upper, "", x, fn)
}

func walkUpper(upper, rel string, x Xattrs, fn func(Change) error) error {
	dir := filepath.Join(upper, filepath.FromSlash(rel))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("walk upper directory: %w", err)
	}
	for _, e := range ents {
		p := path.Join(rel, e.Name())
		full := filepath.Join(dir, e.Name())
		fi, err := e.Info()
		if err != nil {
			return fmt.Errorf("walk upper directory: %w", err)
		}
		if IsWhiteout(fi) {
			if err := fn(Change{Path: p, Kind: Deleted, Info: fi}); err != nil {
				return err
			}
			continue
		}
		names, err := fsx.ListXattrs(full)
		if err != nil {
			return err
		}
		c := Change{Path: p, Kind: Modified, Info: fi}
		for _, n := range names {
			switch n {
			case x.Prefix() + "redirect", x.Prefix() + "metacopy":
				return fmt.Errorf("%w: %s has %s", ErrRedirect, full, n)
			case x.Opaque():
				if fi.IsDir() {
					opq, err := IsOpaque(full, x)
					if err != nil {
						return err
					}
					if opq {
						c.Kind = OpaqueDir
					}
				}
			}
			cn, ok := ContentXattr(n, x)
			if !ok {
				continue
			}
			v, err := fsx.GetXattr(full, n)
			if err != nil {
				return err
			}
			if c.Xattrs == nil {
				c.Xattrs = make(map[string][]byte)
			}
			c.Xattrs[cn] = v
		}
		if err := fn(c); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := walkUpper(upper, p, x, fn); err != nil {
				return err
			}
		}
	}
	return nil
}
