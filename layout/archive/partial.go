package archive

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// Delta bundles: archives that leave out blobs their reader's layout
// holds (WriteOptions.Since), read with ReadOptions.Partial.

// ErrIncomplete means an archive lacks blobs its images need: a delta
// bundle read into a layout that does not hold its base.
var ErrIncomplete = errors.New("the archive lacks blobs its images need")

// IncompleteError lists the blobs an archive's images need that neither
// the archive nor the destination layout holds.
type IncompleteError struct {
	Layout  string
	Missing []ocispec.Descriptor
}

func (e *IncompleteError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v and %s does not hold: %d blob(s)", ErrIncomplete, e.Layout, len(e.Missing))
	for i, d := range e.Missing {
		if i == 20 {
			fmt.Fprintf(&b, ", and %d more", len(e.Missing)-i)
			break
		}
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%s %s (%d bytes)", sep, kindOf(d.MediaType), d.Digest, d.Size)
	}
	return b.String()
}

func (e *IncompleteError) Unwrap() []error { return []error{ErrIncomplete, ErrInvalidArchive} }

// completeFrom copies into tmp every blob below d that tmp lacks and from
// holds, verified as every copy is, and returns those neither holds. The
// bundle's own indexes and manifests say what to look for.
func completeFrom(ctx context.Context, tmp, from *layout.Layout, d ocispec.Descriptor, seen map[digest.Digest]bool, depth int) ([]ocispec.Descriptor, error) {
	if seen[d.Digest] {
		return nil, nil
	}
	seen[d.Digest] = true
	if depth > 16 {
		return nil, fmt.Errorf("%w: %s: descriptors nested too deeply", ErrInvalidArchive, d.Digest)
	}
	if !tmp.Blobs().Has(d.Digest, d.Size) {
		if !from.Blobs().Has(d.Digest, d.Size) {
			return []ocispec.Descriptor{d}, nil
		}
		if _, err := tmp.Blobs().CopyFrom(ctx, from.Blobs(), d.Digest, d.Size); err != nil {
			return nil, fmt.Errorf("take %s %s from %s: %w", kindOf(d.MediaType), d.Digest, from.Dir(), err)
		}
	}
	var children []ocispec.Descriptor
	switch {
	case layout.IsIndex(d.MediaType):
		idx, err := tmp.ReadIndex(d)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
		}
		children = idx.Manifests
	case layout.IsManifest(d.MediaType):
		b, err := tmp.ReadBlob(d, layout.MaxManifestSize)
		if err != nil {
			return nil, err
		}
		m, err := layout.ParseManifest(b)
		if err != nil {
			return nil, fmt.Errorf("%w: manifest %s: %v", ErrInvalidArchive, d.Digest, err)
		}
		children = append(children, m.Config)
		for _, ly := range m.Layers {
			if len(ly.URLs) > 0 && ly.MediaType == layout.MediaTypeDockerForeignLayer {
				continue
			}
			children = append(children, ly)
		}
	}
	var missing []ocispec.Descriptor
	for _, c := range children {
		m, err := completeFrom(ctx, tmp, from, c, seen, depth+1)
		if err != nil {
			return nil, err
		}
		missing = append(missing, m...)
	}
	return missing, nil
}

// kindOf names a blob for messages.
func kindOf(mt string) string {
	switch {
	case layout.IsIndex(mt):
		return "index"
	case layout.IsManifest(mt):
		return "manifest"
	case layout.IsConfig(mt):
		return "config"
	}
	return "layer"
}
