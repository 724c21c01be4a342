package main

import (
	"fmt"
	"os"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/bundle"
)

// overlayEnv names the environment variable that, set to "off", makes
// strata take overlay as unavailable, so that the copying fallback can be
// chosen on purpose.
const overlayEnv = "STRATA_OVERLAY"

// overlayDisabled is the driver an unpack asked for driver uses: the
// default one (vfs), with the fallback warning, when a mounting driver
// (overlay) was asked for and overlayEnv turns mounts off.
func overlayDisabled(driver string) string {
	if !overlayOff(driver) {
		return driver
	}
	overlayFallback(fmt.Errorf("%w: disabled by %s=off", overlay.ErrUnsupported, overlayEnv))
	return bundle.DefaultDriver
}

// overlayOff says whether driver mounts (overlay) and overlayEnv turns
// that off.
func overlayOff(driver string) bool {
	return bundle.DriverMounts(driver) && os.Getenv(overlayEnv) == "off"
}

// overlayFallback says that unpack --driver overlay uses vfs where overlay
// does not work (even with --quiet: the user asked for something else).
func overlayFallback(reason error) {
	fmt.Fprintf(os.Stderr, "strata: warning: %v; falling back to the vfs driver (copies instead of mounts)\n", reason)
}
