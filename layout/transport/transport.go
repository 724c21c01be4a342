// Package transport names the places images are copied between, as skopeo
// names them (oci:DIR[:REF], oci-archive:FILE[:REF],
// docker-archive:FILE[:NAME:TAG]), and copies images from a Source to a
// Destination.
//
// Every transport works through an OCI image layout on local disk: a Source
// puts its images' blobs into a layout it is given, and a Destination takes
// images whose blobs are in a layout. A transport that is a layout itself
// (oci:) lets the other side read or write it directly, so a copy between
// two layouts, or between a layout and an archive, stages nothing. Each
// transport lives in its own file and registers itself with register.
package transport

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/remote"
)

// ErrUnknownTransport means a name has a transport prefix nobody
// registered.
var ErrUnknownTransport = errors.New("unknown transport")

// ErrInvalidName means a transport name is malformed.
var ErrInvalidName = errors.New("invalid image name")

// Image is an image on its way through a copy: the descriptor of its
// manifest or index, and its names.
type Image struct {
	Descriptor ocispec.Descriptor
	Names      []string
	// FullName is the image's fully qualified name when the source knows
	// one beside Names: the io.containerd.image.name of a layout entry
	// (the registry or archive name of an image pulled or loaded under a
	// name of the user's), or the source's own name of an image the
	// destination renames. Archives name an image by it rather than by a
	// bare tag, and layouts record it beside a name of the user's.
	FullName string
	// Duplicates says where the source chose the first of several
	// manifests an index lists for one platform (registry sources).
	Duplicates []layout.DuplicatePlatform
	// Referrers are the image's referrers (signatures, SBOMs,
	// attestations), with Options.Referrers: found by the source,
	// their blobs in the same layout as the image's, recorded by the
	// destination beside it.
	Referrers []layout.Referrer
}

// Options say what a Source fetches, and how registries are reached.
type Options struct {
	// Copy selects platforms out of indexes.
	Copy layout.CopyOptions
	// All fetches every image of a source that names none (oci:DIR with
	// no REF), each with its names.
	All bool
	// Registry applies to every docker:// source and destination:
	// connection and credential options (remote.WithInsecure,
	// remote.WithCertDir, remote.WithAuthFile, ...). Platforms come from
	// Copy instead.
	Registry []remote.Option
	// Partial lets archive sources be delta bundles: blobs they lack are
	// taken from the layout they are read into (see
	// archive.ReadOptions.Partial).
	Partial bool
	// Since makes an archive destination a delta bundle that leaves out
	// the blobs the inventory lists (see archive.WriteOptions); other
	// destinations refuse it.
	Since *layout.Inventory
	// Referrers carries each image's referrers along, recursively: the
	// source finds them (a layout by their subjects and cosign's tags, a
	// registry by its referrers API or fallback tag and cosign's tags,
	// an archive in its OCI layout) and the destination stores them
	// beside the image, digests unchanged.
	Referrers bool
}

// ErrDeltaDestination means a delta (Options.Since) was asked of a
// destination that is not an archive.
var ErrDeltaDestination = errors.New("only an archive can be a delta bundle")

// Source is where images come from.
type Source interface {
	// String is the name the source was parsed from.
	String() string
	// Fetch puts the images the source names, with every blob they reach,
	// into dst and returns them with the names the source gives them. It
	// names nothing in dst.
	Fetch(ctx context.Context, dst *layout.Layout, opts Options) ([]Image, error)
}

// LocalSource is a Source whose images already are in a layout on disk, so
// a destination can read them where they are.
type LocalSource interface {
	Source
	// Local opens the layout and resolves the images the source names,
	// without selecting platforms. The caller closes the layout.
	Local(opts Options) (*layout.Layout, []Image, error)
}

// Destination is where images go.
type Destination interface {
	// String is the name the destination was parsed from.
	String() string
	// Names are the names the destination reference gives (a REF, or
	// NAME:TAG), or nil when it gives none and the source's names are kept.
	Names() []string
	// Put stores imgs, whose blobs are all in src, under their names. It
	// either stores every image or leaves the destination as it was.
	// opts are the copy's (a registry takes its connection options).
	Put(ctx context.Context, src *layout.Layout, imgs []Image, opts Options) error
}

// LayoutDestination is a Destination that is a layout on disk: sources
// fetch into it directly.
type LayoutDestination interface {
	Destination
	// OpenLayout opens the layout, creating it if needed. The caller
	// closes it.
	OpenLayout() (*layout.Layout, error)
}

// StagingDestination is a Destination that says where a copy should stage
// images it cannot write directly: a directory on the filesystem of the
// final file, so staging never fills a memory-backed /tmp.
type StagingDestination interface {
	Destination
	StagingDir() string
}

// transport makes sources and destinations from the part of a name after
// "NAME:".
type transport struct {
	Name           string
	NewSource      func(ref string) (Source, error)
	NewDestination func(ref string) (Destination, error)
}

var (
	regMu      sync.RWMutex
	transports = map[string]transport{}
)

// register adds a transport. Transports register themselves from init.
func register(t transport) {
	regMu.Lock()
	defer regMu.Unlock()
	transports[t.Name] = t
}

// split finds the transport of a name. A name with no known prefix is a
// layout (oci:), as everywhere else on strata's command line.
func split(s string) (transport, string, error) {
	regMu.RLock()
	defer regMu.RUnlock()
	if name, rest, ok := strings.Cut(s, ":"); ok {
		if t, ok := transports[name]; ok {
			return t, rest, nil
		}
		if strings.HasSuffix(name, "-archive") || strings.HasPrefix(rest, "//") {
			return transport{}, "", fmt.Errorf("%w %q in %q (known: %s)", ErrUnknownTransport, name, s, strings.Join(namesLocked(), ", "))
		}
	}
	t, ok := transports["oci"]
	if !ok {
		return transport{}, "", fmt.Errorf("%w: no transport for %q", ErrUnknownTransport, s)
	}
	return t, s, nil
}

func namesLocked() []string {
	out := make([]string, 0, len(transports))
	for n := range transports {
		out = append(out, n+":")
	}
	sort.Strings(out)
	return out
}

// ParseSource parses a source name such as oci:DIR:REF.
func ParseSource(s string) (Source, error) {
	t, rest, err := split(s)
	if err != nil {
		return nil, err
	}
	if t.NewSource == nil {
		return nil, fmt.Errorf("%w: %s: cannot be read from", ErrUnknownTransport, t.Name)
	}
	return t.NewSource(rest)
}

// ParseDestination parses a destination name such as docker-archive:F:N:T.
func ParseDestination(s string) (Destination, error) {
	t, rest, err := split(s)
	if err != nil {
		return nil, err
	}
	if t.NewDestination == nil {
		return nil, fmt.Errorf("%w: %s: cannot be written to", ErrUnknownTransport, t.Name)
	}
	return t.NewDestination(rest)
}

// splitNames splits a comma-separated list of destination names.
func splitNames(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		if n == "" {
			return nil, fmt.Errorf("%w: empty name in %q", ErrInvalidName, s)
		}
		out = append(out, n)
	}
	return out, nil
}
