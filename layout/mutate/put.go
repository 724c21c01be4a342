package mutate

import (
	"encoding/json"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// PutImage stores a new version of img: config (raw JSON, stored as it
// is) and a manifest listing layers (blobs already in the layout, in
// order) with annotations. The manifest and config keep img's media types
// (OCI or Docker schema2) and every other manifest field (subject,
// artifactType). It returns the manifest's descriptor with the config's
// platform; nothing is named.
func PutImage(l *layout.Layout, img *layout.Image, config []byte, layers []ocispec.Descriptor, annotations map[string]string) (ocispec.Descriptor, error) {
	c, err := layout.ParseImageConfig(config)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if layout.IsConfig(img.Manifest.Config.MediaType) && len(c.RootFS.DiffIDs) != len(layers) {
		return ocispec.Descriptor{}, fmt.Errorf("config lists %d diff_ids for %d layers", len(c.RootFS.DiffIDs), len(layers))
	}
	for _, ly := range layers {
		if len(ly.URLs) > 0 && ly.MediaType == layout.MediaTypeDockerForeignLayer {
			continue // foreign layers need not be in a layout
		}
		if !l.Blobs().Has(ly.Digest, ly.Size) {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s is not in the layout", ly.Digest)
		}
	}
	cd, err := l.PutBytes(img.Manifest.Config.MediaType, config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store config: %w", err)
	}
	m := img.Manifest
	m.Config.Digest, m.Config.Size, m.Config.Data = cd.Digest, cd.Size, nil
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	m.Layers = layers
	m.Annotations = annotations
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	if len(b) > layout.MaxManifestSize {
		return ocispec.Descriptor{}, fmt.Errorf("the new manifest would be %d bytes: %w (limit %d)", len(b), layout.ErrTooLarge, layout.MaxManifestSize)
	}
	md, err := l.PutBytes(manifestType(img), b)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	p := platformOf(*c)
	md.Platform = &p
	return md, nil
}

// PutConfig is PutImage for a change of the config alone: img's layers
// and annotations are kept.
func PutConfig(l *layout.Layout, img *layout.Image, cfg *layout.Config) (ocispec.Descriptor, error) {
	b, err := cfg.Bytes()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode config: %w", err)
	}
	return PutImage(l, img, b, img.Manifest.Layers, img.Manifest.Annotations)
}

// LayerMediaType names a layer blob's media type in the family of the
// manifest it goes into: Docker schema2 manifests list Docker layer
// types, OCI manifests OCI ones. The bytes are the same either way.
// Types of neither family (foreign layers, artifacts) are kept. A zstd
// layer cannot go into a Docker image (layout.ErrZstdDocker).
func LayerMediaType(manifestType, layerType string) (string, error) {
	docker := manifestType == layout.MediaTypeDockerManifest
	if docker && (layerType == ocispec.MediaTypeImageLayerZstd || layerType == layout.MediaTypeDockerLayerZstd) {
		return "", fmt.Errorf("layer of type %s: %w", layerType, layout.ErrZstdDocker)
	}
	pairs := [][2]string{
		{ocispec.MediaTypeImageLayer, layout.MediaTypeDockerLayer},
		{ocispec.MediaTypeImageLayerGzip, layout.MediaTypeDockerLayerGzip},
		{ocispec.MediaTypeImageLayerZstd, layout.MediaTypeDockerLayerZstd},
	}
	for _, p := range pairs {
		if layerType == p[0] || layerType == p[1] {
			if docker {
				return p[1], nil
			}
			return p[0], nil
		}
	}
	return layerType, nil
}

// manifestType is the media type of img's manifest.
func manifestType(img *layout.Image) string {
	if img.Descriptor.MediaType != "" {
		return img.Descriptor.MediaType
	}
	if img.Manifest.MediaType != "" {
		return img.Manifest.MediaType
	}
	return ocispec.MediaTypeImageManifest
}
