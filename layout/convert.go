package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
)

// Manifest formats Convert writes.
const (
	FormatOCI    = "oci"
	FormatDocker = "docker"
)

// ErrZstdDocker means an image with zstd layers was asked for in Docker
// schema2 form, which has no zstd layer type that Docker loads: the
// layers need another compression (ConvertOptions.Compression).
var ErrZstdDocker = errors.New("zstd layers cannot be used in a Docker image")

// ConvertOptions say how Convert rewrites an image. The zero value changes
// nothing.
type ConvertOptions struct {
	// Format is FormatOCI or FormatDocker for the media types of
	// manifests, indexes, configs and layers; empty keeps each image's.
	Format string
	// Compression recompresses layers that are in another compression;
	// empty keeps each layer's.
	Compression Compression
	// Level is the compression level; 0 means the format's default.
	Level int
	// Force recompresses layers already in the requested compression (or,
	// with no Compression, in their own).
	Force bool
}

// ParseFormat checks a --format value.
func ParseFormat(s string) (string, error) {
	switch s {
	case FormatOCI, FormatDocker, "":
		return s, nil
	case "v2s2", "docker-v2s2":
		return FormatDocker, nil
	}
	return "", fmt.Errorf("unknown manifest format %q: use oci or docker", s)
}

// Convert rewrites the image desc points at in l as o asks and returns the
// new descriptor. Configs keep their bytes (only their media type changes);
// layers that are recompressed keep their diffID, which Convert checks
// against the config, while their digest changes. An image that needs no
// change keeps its descriptor, so its digest survives. Nothing is named:
// the new blobs are reachable only from the returned descriptor (gc, or
// the Undo of a failed command, removes them when nothing names it).
// Cancelling ctx stops the conversion between layers and within a
// megabyte of a layer being recompressed.
func Convert(ctx context.Context, l *Layout, desc ocispec.Descriptor, o ConvertOptions) (ocispec.Descriptor, error) {
	if o.Compression == compression.Bzip2 || o.Compression == compression.Xz {
		return ocispec.Descriptor{}, fmt.Errorf("%w %q as output: use gzip, zstd or none", compression.ErrUnsupported, o.Compression)
	}
	if o.Compression == "" && !o.Force && o.Format == "" {
		return desc, nil
	}
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	return l.convert(ctx, desc, o, 0)
}

func (l *Layout) convert(ctx context.Context, desc ocispec.Descriptor, o ConvertOptions, depth int) (ocispec.Descriptor, error) {
	if depth > 8 {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: indexes nested too deeply", desc.Digest)
	}
	switch {
	case IsIndex(desc.MediaType):
		return l.convertIndex(ctx, desc, o, depth)
	case IsManifest(desc.MediaType):
		return l.convertManifest(ctx, desc, o)
	}
	// Other manifests (artifacts, attestations) are copied as they are.
	return desc, nil
}

func (l *Layout) convertIndex(ctx context.Context, desc ocispec.Descriptor, o ConvertOptions, depth int) (ocispec.Descriptor, error) {
	b, err := l.ReadBlob(desc, MaxManifestSize)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("read index %s: %w", desc.Digest, err)
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	changed := false
	for i, m := range idx.Manifests {
		nd, err := l.convert(ctx, m, o, depth+1)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if nd.Digest != m.Digest || nd.MediaType != m.MediaType {
			changed = true
		}
		idx.Manifests[i] = nd
	}
	mt := desc.MediaType
	switch o.Format {
	case FormatOCI:
		mt = ocispec.MediaTypeImageIndex
	case FormatDocker:
		mt = MediaTypeDockerManifestList
	}
	if mt != desc.MediaType {
		changed = true
	}
	if !changed {
		return desc, nil
	}
	idx.MediaType = mt
	nd, err := l.PutJSON(mt, idx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store index: %w", err)
	}
	nd.Platform, nd.Annotations = desc.Platform, desc.Annotations
	return nd, nil
}

func (l *Layout) convertManifest(ctx context.Context, desc ocispec.Descriptor, o ConvertOptions) (ocispec.Descriptor, error) {
	img, err := l.ReadImage(desc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	m := img.Manifest
	format := o.Format
	if format == "" {
		format = FormatOCI
		if desc.MediaType == MediaTypeDockerManifest {
			format = FormatDocker
		}
	}
	changed := false
	cfgType := ocispec.MediaTypeImageConfig
	mType := ocispec.MediaTypeImageManifest
	if format == FormatDocker {
		cfgType, mType = MediaTypeDockerConfig, MediaTypeDockerManifest
	}
	if IsConfig(m.Config.MediaType) && m.Config.MediaType != cfgType {
		m.Config.MediaType = cfgType
		changed = true
	}
	if mType != desc.MediaType {
		changed = true
	}
	diffIDs := img.Config.RootFS.DiffIDs
	layers := make([]ocispec.Descriptor, len(m.Layers))
	for i, ly := range m.Layers {
		if err := ctx.Err(); err != nil {
			return ocispec.Descriptor{}, err
		}
		nl, err := l.convertLayer(ctx, ly, i, diffIDs, format, o)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("image %s: layer %s: %w", desc.Digest, ly.Digest, err)
		}
		if nl.Digest != ly.Digest || nl.MediaType != ly.MediaType {
			changed = true
		}
		layers[i] = nl
	}
	if !changed {
		return desc, nil
	}
	m.Layers = layers
	m.MediaType = mType
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	nd, err := l.PutBytes(mType, b)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	nd.Platform, nd.Annotations = desc.Platform, desc.Annotations
	return nd, nil
}

// layerCompression reads a layer media type's compression; ok is false for
// media types that are not plain filesystem layers (foreign and
// non-distributable layers, artifacts), which are left alone.
func layerCompression(mt string) (Compression, bool) {
	switch mt {
	case ocispec.MediaTypeImageLayer, MediaTypeDockerLayer:
		return compression.None, true
	case ocispec.MediaTypeImageLayerGzip, MediaTypeDockerLayerGzip:
		return compression.Gzip, true
	case ocispec.MediaTypeImageLayerZstd, MediaTypeDockerLayerZstd:
		return compression.Zstd, true
	}
	return "", false
}

// layerType is the media type of a layer in format with compression k.
func layerType(format string, k Compression) (string, error) {
	if format == FormatDocker {
		switch k {
		case compression.None:
			return MediaTypeDockerLayer, nil
		case compression.Gzip:
			return MediaTypeDockerLayerGzip, nil
		case compression.Zstd:
			return "", ErrZstdDocker
		}
		return "", fmt.Errorf("%w %q", compression.ErrUnsupported, k)
	}
	return LayerMediaType(k)
}

func (l *Layout) convertLayer(ctx context.Context, ly ocispec.Descriptor, i int, diffIDs []digest.Digest, format string, o ConvertOptions) (ocispec.Descriptor, error) {
	have, ok := layerCompression(ly.MediaType)
	if !ok {
		if strings.Contains(ly.MediaType, "zstd") && format == FormatDocker {
			return ocispec.Descriptor{}, ErrZstdDocker
		}
		return ly, nil
	}
	want := o.Compression
	if want == "" {
		want = have
	}
	mt, err := layerType(format, want)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if want == have && !o.Force {
		ly.MediaType = mt
		return ly, nil
	}
	if i >= len(diffIDs) {
		return ocispec.Descriptor{}, fmt.Errorf("config lists %d diff_ids for more layers", len(diffIDs))
	}
	r, err := l.blobs.Open(ly.Digest, ly.Size)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer r.Close()
	opts := []LayerOption{WithCompression(want), WithRecompress(), WithTarCheck()}
	if o.Level != 0 {
		opts = append(opts, WithLevel(o.Level))
	}
	nl, err := l.PutLayer(ctx, r, opts...)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("recompress: %w", err)
	}
	if nl.DiffID != diffIDs[i] {
		return ocispec.Descriptor{}, fmt.Errorf("recompressed content has diff_id %s, config says %s", nl.DiffID, diffIDs[i])
	}
	out := nl.Descriptor
	out.MediaType = mt
	out.Annotations = ly.Annotations
	return out, nil
}
