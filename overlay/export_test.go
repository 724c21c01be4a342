package overlay

import (
	"github.com/strata-oci/strata/internal/idmap"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
)

// For the tests of package overlay_test, which unpack through package
// bundle.

func (d *Driver) Xattrs() Xattrs                                      { return d.x }
func (d *Driver) Upper(c *snapshot.Container) string                  { return d.upper(c) }
func (d *Driver) Work(c *snapshot.Container) string                   { return d.work(c) }
func (d *Driver) Lowers(top *snapshot.Info) ([]string, error)         { return d.lowers(top) }
func IDMappedLayers(dirs []string, m *ids.Map) (*idmap.Mounts, error) { return idmappedLayers(dirs, m) }

// SetDetachedLayers replaces the kernel's answer to whether overlay takes
// detached idmapped layers, until the returned function puts it back.
func SetDetachedLayers(f func() bool) func() {
	saved := detachedLayers
	detachedLayers = f
	return func() { detachedLayers = saved }
}
