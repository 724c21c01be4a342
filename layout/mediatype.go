package layout

import (
	"encoding/json"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker schema2 media types, read wherever the OCI ones are.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar"
	MediaTypeDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	MediaTypeDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
	MediaTypeDockerForeignLayer = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// Annotations strata reads and writes on index.json entries.
const (
	// AnnotationRefName names an image in index.json, as skopeo and umoci
	// read it.
	AnnotationRefName = ocispec.AnnotationRefName
	// AnnotationImageName is the full image name containerd and nerdctl
	// record beside a short ref.name.
	AnnotationImageName = "io.containerd.image.name"
)

// IsIndex reports whether mt is an OCI image index or a Docker manifest list.
func IsIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

// IsManifest reports whether mt is an OCI image manifest or a Docker
// schema2 manifest.
func IsManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

// IsConfig reports whether mt is an OCI or Docker image config.
func IsConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == MediaTypeDockerConfig
}

// IsLayer reports whether mt is a filesystem layer media type, OCI or Docker,
// in any compression.
func IsLayer(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.oci.image.layer.") ||
		strings.HasPrefix(mt, "application/vnd.docker.image.rootfs.")
}

// SniffMediaType finds the media type of a manifest or index from its
// content, for descriptors that do not say (see sniffMediaType); "" when
// it is neither.
func SniffMediaType(b []byte) string { return sniffMediaType(b) }

// sniffMediaType finds the media type of a manifest or index from its
// content, for descriptors and blobs that do not say. An image config also
// has a "config" field, so a manifest is recognised by its config being a
// descriptor.
func sniffMediaType(b []byte) string {
	var probe struct {
		MediaType string          `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
		Config    json.RawMessage `json:"config"`
	}
	if json.Unmarshal(b, &probe) != nil {
		return ""
	}
	switch {
	case probe.MediaType != "":
		return probe.MediaType
	case probe.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case probe.Config != nil:
		var cfg struct {
			Digest string `json:"digest"`
		}
		if json.Unmarshal(probe.Config, &cfg) == nil && cfg.Digest != "" {
			return ocispec.MediaTypeImageManifest
		}
	}
	return ""
}
