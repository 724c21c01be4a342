package layout

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Walk visits root and every descriptor reachable from it: the manifests of
// indexes (nested ones too) and the config and layers of manifests. fn gets
// the verified content of indexes and manifests and nil for other blobs.
// Walk stops at the first error. Blobs of unknown media types are visited
// but not looked into, as the spec requires them to be tolerated.
func (l *Layout) Walk(root ocispec.Descriptor, fn func(d ocispec.Descriptor, content []byte) error) error {
	return l.walk(root, fn, 0)
}

func (l *Layout) walk(d ocispec.Descriptor, fn func(ocispec.Descriptor, []byte) error, depth int) error {
	if depth > 16 {
		return fmt.Errorf("%s: descriptors nested too deeply", d.Digest)
	}
	d = l.typed(d)
	if !IsIndex(d.MediaType) && !IsManifest(d.MediaType) {
		return fn(d, nil)
	}
	b, err := l.ReadBlob(d, MaxManifestSize)
	if err != nil {
		return err
	}
	if err := fn(d, b); err != nil {
		return err
	}
	children, err := childrenOf(d, b)
	if err != nil {
		return err
	}
	for _, c := range children {
		if err := l.walk(c, fn, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// typed fills in the media type of a descriptor that gives none when its
// blob is a manifest or an index, so that what it references is followed
// (and kept by gc) instead of it being taken for a leaf.
func (l *Layout) typed(d ocispec.Descriptor) ocispec.Descriptor {
	if d.MediaType != "" || d.Size < 0 || d.Size > MaxManifestSize {
		return d
	}
	b, err := l.ReadBlob(d, MaxManifestSize)
	if err != nil {
		return d
	}
	if mt := sniffMediaType(b); IsIndex(mt) || IsManifest(mt) {
		d.MediaType = mt
	}
	return d
}

// childrenOf lists the descriptors an index or manifest refers to.
func childrenOf(d ocispec.Descriptor, b []byte) ([]ocispec.Descriptor, error) {
	switch {
	case IsIndex(d.MediaType):
		idx, err := ParseIndex(b)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		return idx.Manifests, nil
	case IsManifest(d.MediaType):
		m, err := ParseManifest(b)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		out := make([]ocispec.Descriptor, 0, len(m.Layers)+1)
		out = append(out, m.Config)
		// Foreign layers (with urls) need not be present in a layout.
		for _, ly := range m.Layers {
			if len(ly.URLs) > 0 && ly.MediaType == MediaTypeDockerForeignLayer {
				continue
			}
			out = append(out, ly)
		}
		return out, nil
	}
	return nil, nil
}
