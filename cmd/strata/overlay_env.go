package main

import (
	"fmt"
	"os"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// overlayEnv names the environment variable that, set to "off", makes
// strata take overlay as unavailable, so that the copying fallback can be
// chosen on purpose.
const overlayEnv = "STRATA_OVERLAY"

// overlayDisabled is the driver an unpack asked for driver uses: vfs,
// with the fallback warning, when overlay was asked for and overlayEnv
// turns it off.
func overlayDisabled(driver string) string {
	if driver != overlay.Name || os.Getenv(overlayEnv) != "off" {
		return driver
	}
	overlayFallback(fmt.Errorf("%w: disabled by %s=off", overlay.ErrUnsupported, overlayEnv))
	return vfs.Name
}

// overlayFallback says that unpack --driver overlay uses vfs where overlay
// does not work (even with --quiet: the user asked for something else).
func overlayFallback(reason error) {
	fmt.Fprintf(os.Stderr, "strata: warning: %v; falling back to the vfs driver (copies instead of mounts)\n", reason)
}
