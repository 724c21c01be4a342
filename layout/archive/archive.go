// Package archive reads and writes image archives: oci-archive (a tar of an
// OCI image layout) and docker-archive (the `docker save` format).
//
// Written docker-archives hold both an OCI layout (oci-layout, index.json,
// blobs/) and the manifest.json and repositories files of `docker save`,
// with manifest.json pointing into blobs/, as Docker 25 writes them: Docker
// 20.10 and 25+, podman and skopeo all load them, and strata reads the
// manifests back unchanged. Written archives are deterministic: entries
// sorted, timestamps zero, owners root.
//
// Reading accepts both formats and every docker-archive dialect (legacy
// <id>/layer.tar, podman's and skopeo's <hex>.tar, crane's compressed
// layers, Docker 25's blobs/) in one streaming pass, so stdin works. Entry
// names are never used as file system paths: every regular file is hashed
// into a private blob store inside the destination layout's .strata
// directory, named entries are looked up in memory, and the images are
// then copied into the destination, verified, only once the whole archive
// has been read and checked. A refused archive leaves the destination's
// index.json and blobs as they were.
package archive

import (
	"errors"
	"strings"

	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// Format is an archive format, named as skopeo names its transports.
type Format string

// The archive formats.
const (
	Docker Format = "docker-archive"
	OCI    Format = "oci-archive"
)

// Errors an archive is refused with; they are wrapped with the entry or
// image concerned.
var (
	// ErrUnsafeEntry means an entry name or link target is absolute,
	// climbs out of the archive with "..", or a blob is a link.
	ErrUnsafeEntry = errors.New("unsafe archive entry")
	// ErrInvalidArchive means the archive is not an image archive or is
	// inconsistent: a missing file, a duplicate entry, a bad manifest.
	ErrInvalidArchive = errors.New("invalid image archive")
	// ErrNoImage means no image in the archive has the requested name.
	ErrNoImage = errors.New("no such image in archive")
	// ErrNotDockerCompatible means an image cannot go into a
	// docker-archive: it is an index, or it has zstd layers.
	ErrNotDockerCompatible = errors.New("image cannot be written as a docker-archive")
)

// Image is one image of an archive: a manifest (or, in an oci-archive, an
// index) and the names it carries.
type Image struct {
	Descriptor ocispec.Descriptor
	Names      []string
	// Referrers are the image's referrers (signatures, SBOMs): Write
	// stores them in the OCI layout part as untagged index.json entries
	// (cosign's under their tags in the repositories of Names), Read
	// returns them with ReadOptions.Referrers.
	Referrers []layout.Referrer
}

// dockerEntry is one element of a docker-archive's manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
	// Parent and LayerSources appear in archives docker writes; strata
	// reads them only to keep them out of the way.
	Parent       string                        `json:",omitempty"`
	LayerSources map[string]ocispec.Descriptor `json:",omitempty"`
}

// DockerTag turns an image name into the repository:tag form docker load
// records (busybox:latest, example.com/x/y:1). Names without a tag get
// :latest; names that are not image references (a bare digest) give "".
func DockerTag(name string) string {
	if strings.HasPrefix(name, "@") {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	if _, ok := named.(reference.Digested); ok {
		if _, tagged := named.(reference.Tagged); !tagged {
			return ""
		}
	}
	named = reference.TagNameOnly(named)
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return ""
	}
	t, err := reference.WithTag(reference.TrimNamed(tagged), tagged.Tag())
	if err != nil {
		return ""
	}
	return reference.FamiliarString(t)
}

// sameName reports whether two image names mean the same image
// (busybox, busybox:latest and docker.io/library/busybox:latest do).
func sameName(a, b string) bool {
	if a == b {
		return true
	}
	ta, tb := DockerTag(a), DockerTag(b)
	return ta != "" && ta == tb
}
