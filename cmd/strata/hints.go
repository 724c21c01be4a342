package main

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/layout/mirror"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/layout/transport"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/build"
	strun "github.com/strata-oci/strata/snapshot/run"
)

// hintFor returns what to type to get past err, appended to the one line
// that reports it, or "". The libraries name the condition (a sentinel or
// typed error); the flags and commands that address it are the CLI's.
func hintFor(err error) string {
	var (
		unauthorized *remote.UnauthorizedError
		untrusted    *tls.CertificateVerificationError
		notUndone    *transport.NotUndoneError
	)
	switch {
	case errors.As(err, &unauthorized) && unauthorized.Refused:
		return fmt.Sprintf(" (see strata login %s)", unauthorized.Registry)
	case errors.As(err, &unauthorized):
		return fmt.Sprintf(" (run strata login %s)", unauthorized.Registry)
	case errors.Is(err, remote.ErrPlainHTTPRefused):
		return "; if the network is trusted, use --plain-http (or --insecure) to talk plain HTTP to it"
	case errors.As(err, &untrusted):
		return " (give its CA with --cert-dir DIR or SSL_CERT_FILE, or skip verification with --insecure)"
	case errors.Is(err, remote.ErrPartialIndex):
		return ": push what it holds with --platform"
	case errors.Is(err, mirror.ErrNameClash):
		return "; --scoped keeps whole source names apart"
	case errors.Is(err, archive.ErrIncomplete):
		return "; it is a delta bundle (save --since) whose base this layout lacks: load the base first, or make the bundle again --since this layout's inventory"
	case errors.Is(err, layout.ErrNameTaken):
		return " (strata index add changes an index; strata rm frees the name)"
	case errors.Is(err, layout.ErrZstdDocker):
		return "; recompress with --compression gzip"
	case errors.As(err, &notUndone):
		return "; strata gc removes those no image uses"
	case errors.Is(err, build.ErrNoContainerfile):
		return " (name one with -f FILE)"
	case errors.Is(err, strun.ErrNoRuntime):
		return " (install crun or runc)"
	case errors.Is(err, mutate.ErrNoBase):
		return " (give --old-base and --new-base)"
	case errors.Is(err, mutate.ErrNotBasedOn):
		return " (is --old-base the image it was built on?)"
	case errors.Is(err, mutate.ErrNotIndex):
		return " (index:KEY=VALUE annotations need an image index)"
	case errors.Is(err, mutate.ErrInPlace):
		return " (give NEWREF)"
	case errors.Is(err, imagefs.ErrUnsupportedSource):
		return " (strata pull it into a layout first)"
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
