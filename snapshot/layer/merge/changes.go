package merge

import (
	"fmt"
	"io"

	"github.com/strata-oci/strata/snapshot/layer"
)

// ApplyChanges applies d, the changes of a bundle's rootfs over the image
// the tree was read from (as a driver's Diff finds them), as one more
// layer named name: the tree becomes what the rootfs holds. Contents of
// changed files are read from the rootfs when needed (Compare, WriteTar),
// and must not change meanwhile.
func (t *Tree) ApplyChanges(d *layer.Diff, name string) error {
	l := len(t.layers)
	t.layers = append(t.layers, Layer{Name: name})
	a := t.newApplier(l)
	for i, c := range d.Changes() {
		r := record{name: c.Path, src: source{layer: l, entry: i}}
		e := c.Entry
		switch c.Kind {
		case layer.ChangeWhiteout:
			dir, base := splitPath(c.Path)
			r.name = joinPath(dir, whiteoutPrefix+base)
		case layer.ChangeOpaque:
			r.name = joinPath(c.Path, whiteoutOpaque)
		case layer.ChangeLink:
			r.typ, r.linkname = '1', c.LinkTo
		case layer.ChangeFile:
			if e == nil {
				return fmt.Errorf("change %s: no metadata", c.Path)
			}
			r.mode, r.uid, r.gid, r.mtime, r.xattrs = int64(e.Mode), e.UID, e.GID, e.Mtime, e.Xattrs
			r.devMajor, r.devMinor = e.DevMajor, e.DevMinor
			switch e.Type {
			case layer.TypeReg:
				c := c
				r.typ, r.size = '0', e.Size
				r.src.open = func() (io.ReadCloser, error) { return d.Open(c) }
			case layer.TypeDir:
				r.typ = '5'
			case layer.TypeSymlink:
				r.typ, r.linkname = '2', e.Link
			case layer.TypeChar, layer.TypeBlock, layer.TypeFifo:
				r.typ = e.Type
			default:
				return fmt.Errorf("change %s: unknown type %q", c.Path, e.Type)
			}
		}
		if err := a.apply(&r); err != nil {
			return fmt.Errorf("%s: %s: %w", name, c.Path, err)
		}
	}
	return nil
}

func joinPath(dir, base string) string {
	if dir == "." || dir == "" {
		return base
	}
	return dir + "/" + base
}
