package bundle

import (
	"fmt"
	"sort"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// use says what a driver is opened for.
type use int

const (
	// forUnpack makes new bundles: the driver checks that it works here
	// (overlay: a trial mount).
	forUnpack use = iota
	// forBundle works on an existing bundle, which shows the driver
	// works: no trial.
	forBundle
	// forMount only mounts an existing bundle's rootfs: nothing is
	// written into the layers, so another user's may be mounted.
	forMount
)

// driver is how this package opens a snapshot driver by the name users
// and records give.
type driver struct {
	open func(s *snapshot.Store, owners *ids.Map, u use) (snapshot.Driver, error)
	// stacked is the driver's Stacked, for gc, which opens no driver.
	stacked bool
	// mounts is set for a driver whose rootfs is a mount (see
	// DriverMounts).
	mounts bool
}

// DefaultDriver is the driver an unpack uses when none is named, and the
// one it falls back to (UnpackOptions.OnFallback): it copies, and works
// on any file system for any user.
const DefaultDriver = vfs.Name

// DriverMounts says whether the driver called name makes a bundle's
// rootfs by mounting its layers: a rootless process then reaches the
// rootfs only inside the user namespace the mount lives in, and the
// rootfs is mounted again after a reboot (Bundle.Mount). A rootfs of any
// other driver is a plain directory. It is false for a name no driver
// has, so that callers may ask before the name is checked.
func DriverMounts(name string) bool { return drivers[name].mounts }

// overlayCheck tries overlay before a new bundle uses it; tests replace
// it to see a kernel refuse.
var overlayCheck = overlay.Check

// drivers are the snapshot drivers a bundle can use, by name.
var drivers = map[string]driver{
	vfs.Name: {
		open: func(s *snapshot.Store, owners *ids.Map, _ use) (snapshot.Driver, error) {
			return vfs.New(s, owners)
		},
		stacked: false,
	},
	overlay.Name: {
		open: func(s *snapshot.Store, owners *ids.Map, u use) (snapshot.Driver, error) {
			o := overlay.DriverOptions{ReadOnly: u == forMount}
			if u == forUnpack {
				o.Check = overlayCheck
			}
			return overlay.NewDriver(s, owners, o)
		},
		stacked: true,
		mounts:  true,
	},
}

// CheckDriver returns an error wrapping ErrUnknownDriver when no snapshot
// driver is called name, so that a command can refuse it before any work.
func CheckDriver(name string) error {
	if _, ok := drivers[name]; !ok {
		return fmt.Errorf("%w %q (have %v)", ErrUnknownDriver, name, driverNames())
	}
	return nil
}

// driverNames lists the names of the snapshot drivers.
func driverNames() []string {
	var out []string
	for n := range drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// openDriver opens the driver name for the snapshots of s written under
// owners (a bundle's, which may be another process's), for u.
func openDriver(name string, s *snapshot.Store, owners *ids.Map, u use) (snapshot.Driver, error) {
	if err := CheckDriver(name); err != nil {
		return nil, err
	}
	return drivers[name].open(s, owners, u)
}
