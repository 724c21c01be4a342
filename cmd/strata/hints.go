package main

import (
	"errors"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
)

// hint is the advice the command line adds to an error a library
// returned: libraries name the condition, the command says which flag or
// command gets around it.
func hint(err error) string {
	switch {
	case errors.Is(err, snapshot.ErrNoDefaultRoot):
		return " (use --root)"
	case errors.Is(err, overlay.ErrXattrForm):
		return " (use another --root)"
	case errors.Is(err, snapshot.ErrWrongDriver):
		return " (remove it with strata snapshots rm, or use another --root)"
	case errors.Is(err, overlay.ErrRemount):
		return " (strata mount mounts it again)"
	case errors.Is(err, overlay.ErrIDMappedLayers):
		return " (--driver vfs copies instead)"
	case errors.Is(err, snapshot.ErrNotOwner):
		return " (run strata as that user)"
	}
	return ""
}
