package layer

import (
	"io"

	"github.com/strata-oci/strata/internal/fsx"
)

// Changes returns the diff's entries, in layer order, for readers of a
// diff other than WriteTar (snapshot/layer/merge applies them to a
// tree). The caller must not change them.
func (d *Diff) Changes() []*Change { return d.changes }

// Open opens the regular file of change c (ChangeFile) for reading, as
// WriteTar reads it: its name resolved inside the diff's root, read
// rights lent where an unprivileged owner lacks them.
func (d *Diff) Open(c *Change) (io.ReadCloser, error) {
	t, err := fsx.OpenTree(d.root)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	return openClean(t, c.Path)
}
