package layout

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Size limits for JSON blobs read whole (and downloaded by pull), past
// which they are refused with ErrTooLarge: 4 MiB, the limit of
// distribution and containerd for manifests and indexes and of
// containers/image (skopeo, podman) for configs too. A config that large
// already holds thousands of layers' history; one larger could not be
// pulled or loaded by those tools either.
const (
	MaxManifestSize = 4 << 20
	MaxConfigSize   = 4 << 20
)

// ErrNoPlatform means an index holds no image for the requested platform.
var ErrNoPlatform = errors.New("no image for platform")

// Image is one platform-specific image: its manifest and config.
type Image struct {
	// Descriptor is the manifest's descriptor.
	Descriptor  ocispec.Descriptor
	Manifest    ocispec.Manifest
	ManifestRaw []byte
	// Config is the typed view of ConfigRaw; edit ConfigRaw (see
	// ParseConfig) so that fields strata does not model survive.
	Config    ocispec.Image
	ConfigRaw []byte
}

// Resolve finds the index.json entry for ref: a name recorded in
// org.opencontainers.image.ref.name (or io.containerd.image.name), matched
// exactly, then as docker reads names (ov1 is docker.io/library/ov1:latest),
// then as a short name (see names.go); or a digest (@sha256:...). An empty
// ref selects the layout's only image. The entry is returned with its
// annotations, so the caller sees the name it was found under. A name that
// matches several images gives an *AmbiguousRefError.
func (l *Layout) Resolve(ref string) (ocispec.Descriptor, error) {
	idx, err := l.Index()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return l.resolveIn(idx, ref)
}

func (l *Layout) resolveIn(idx *Index, ref string) (ocispec.Descriptor, error) {
	if ref == "" {
		// The layout's only image: its signatures and SBOMs beside it
		// do not count.
		seen := map[digest.Digest]ocispec.Descriptor{}
		for _, d := range idx.Manifests {
			seen[d.Digest] = d
		}
		if len(seen) > 1 {
			for dg, d := range seen {
				if l.isReferrerEntry(d) {
					delete(seen, dg)
				}
			}
		}
		switch len(seen) {
		case 1:
			for _, d := range seen {
				return d, nil
			}
		case 0:
			return ocispec.Descriptor{}, fmt.Errorf("layout %s: %w: it holds no images", l.dir, ErrRefNotFound)
		}
		return ocispec.Descriptor{}, fmt.Errorf("layout %s holds %d images: %w: name one as %s:REF", l.dir, len(seen), ErrAmbiguous, l.dir)
	}
	if err := checkLookupRef(ref); err != nil {
		return ocispec.Descriptor{}, err
	}
	if d, ok := IsDigestRef(ref); ok {
		for _, m := range idx.Manifests {
			if m.Digest == d {
				return stripName(m), nil
			}
		}
		// A digest that is not a top-level entry may still name a blob
		// inside the layout, such as one platform's manifest of an index.
		if size, err := l.blobs.Stat(d); err == nil {
			b, err := l.blobs.ReadAll(d, size, MaxManifestSize)
			if err == nil {
				if mt := sniffMediaType(b); IsIndex(mt) || IsManifest(mt) {
					return ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}, nil
				}
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %w", l.dir, ref, ErrRefNotFound)
	}
	hits, step := lookupName(idx, ref, anyName)
	if step == matchNone {
		return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %w", l.dir, ref, ErrRefNotFound)
	}
	if step != matchExact {
		// An exact name is one entry (the first, should index.json hold it
		// twice); a name read as docker reads it may stand for several.
		if err := l.ambiguity(ref, hits, distinctImages); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return hits[0].desc, nil
}

func stripName(d ocispec.Descriptor) ocispec.Descriptor {
	if _, ok := d.Annotations[AnnotationRefName]; !ok {
		return d
	}
	a := map[string]string{}
	for k, v := range d.Annotations {
		if k != AnnotationRefName && k != AnnotationImageName {
			a[k] = v
		}
	}
	if len(a) == 0 {
		a = nil
	}
	d.Annotations = a
	return d
}

// ParsePlatform parses os/arch[/variant] and normalises it (arm64 is
// arm64/v8, x86_64 is amd64). An empty string is the host platform.
func ParsePlatform(s string) (ocispec.Platform, error) {
	if s == "" {
		return platforms.DefaultSpec(), nil
	}
	p, err := platforms.Parse(s)
	if err != nil {
		return ocispec.Platform{}, fmt.Errorf("invalid platform %q: %w", s, err)
	}
	return platforms.Normalize(p), nil
}

// formatPlatform renders a platform as os/arch[/variant].
func formatPlatform(p ocispec.Platform) string { return platforms.Format(p) }

// ReadBlob reads a small blob named by desc whole and verifies it.
func (l *Layout) ReadBlob(desc ocispec.Descriptor, max int64) ([]byte, error) {
	return l.blobs.ReadAll(desc.Digest, desc.Size, max)
}

// ReadIndex reads an image index blob (OCI or Docker manifest list).
func (l *Layout) ReadIndex(desc ocispec.Descriptor) (*Index, error) {
	b, err := l.ReadBlob(desc, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read index %s: %w", desc.Digest, err)
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", desc.Digest, err)
	}
	return idx, nil
}

// ParseManifest parses an image manifest (OCI or Docker schema2) and checks
// the fields strata relies on.
func ParseManifest(b []byte) (*ocispec.Manifest, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("parse manifest: unsupported schemaVersion %d", m.SchemaVersion)
	}
	if m.MediaType != "" && !IsManifest(m.MediaType) {
		return nil, fmt.Errorf("parse manifest: media type %s is not an image manifest", m.MediaType)
	}
	if err := checkDescriptor(m.Config); err != nil {
		return nil, fmt.Errorf("parse manifest: config: %w", err)
	}
	for i, d := range m.Layers {
		if err := checkDescriptor(d); err != nil {
			return nil, fmt.Errorf("parse manifest: layers[%d]: %w", i, err)
		}
	}
	return &m, nil
}

func checkDescriptor(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %v", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	return nil
}

// ParseImageConfig parses an image config and checks the fields strata
// relies on.
func ParseImageConfig(b []byte) (*ocispec.Image, error) {
	var c ocispec.Image
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	for i, d := range c.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("parse config: rootfs.diff_ids[%d]: invalid digest %q: %v", i, d, err)
		}
	}
	return &c, nil
}

// ReadImage reads the image manifest desc points at, and its config.
func (l *Layout) ReadImage(desc ocispec.Descriptor) (*Image, error) {
	mb, err := l.ReadBlob(desc, MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", desc.Digest, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if desc.MediaType == "" {
		desc.MediaType = m.MediaType
		if desc.MediaType == "" {
			desc.MediaType = ocispec.MediaTypeImageManifest
		}
	}
	cb, err := l.ReadBlob(m.Config, MaxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("read config %s of manifest %s: %w", m.Config.Digest, desc.Digest, err)
	}
	c, err := ParseImageConfig(cb)
	if err != nil {
		return nil, fmt.Errorf("config %s of manifest %s: %w", m.Config.Digest, desc.Digest, err)
	}
	return &Image{Descriptor: desc, Manifest: *m, ManifestRaw: mb, Config: *c, ConfigRaw: cb}, nil
}

// Image resolves ref and returns the image for platform p (nil means the
// host platform), following nested indexes.
func (l *Layout) Image(ref string, p *ocispec.Platform) (*Image, error) {
	desc, err := l.Resolve(ref)
	if err != nil {
		return nil, err
	}
	md, err := l.SelectManifest(desc, p)
	if err != nil {
		return nil, fmt.Errorf("%s:%s: %w", l.dir, ref, err)
	}
	return l.ReadImage(md)
}

// SelectManifest returns desc itself when it is a manifest, or the best
// manifest for platform p (nil means the host) when it is an index,
// following nested indexes. Of several manifests for the same platform the
// first is taken, as containerd and docker take it (PickManifest says
// which others there were).
func (l *Layout) SelectManifest(desc ocispec.Descriptor, p *ocispec.Platform) (ocispec.Descriptor, error) {
	md, _, err := l.selectManifestChoice(desc, p)
	return md, err
}

// selectManifestChoice is SelectManifest, and also reports, when an index
// lists more than one manifest for the platform it chose, which ones it
// did not take (nil otherwise).
func (l *Layout) selectManifestChoice(desc ocispec.Descriptor, p *ocispec.Platform) (ocispec.Descriptor, *DuplicatePlatform, error) {
	want := platforms.DefaultSpec()
	if p != nil {
		want = platforms.Normalize(*p)
	}
	if desc.MediaType == "" {
		b, err := l.ReadBlob(desc, MaxManifestSize)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		desc.MediaType = sniffMediaType(b)
	}
	if IsManifest(desc.MediaType) {
		return stripName(desc), nil, nil
	}
	if !IsIndex(desc.MediaType) {
		return ocispec.Descriptor{}, nil, fmt.Errorf("%s: media type %q is not an image", desc.Digest, desc.MediaType)
	}
	ms, err := l.indexManifests(desc, 0)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return PickManifest(desc.Digest, want, ms)
}

// indexManifests lists the manifests of index desc and of the indexes it
// nests, in order, each with its platform (taken from the image's config
// where the index leaves it out). Nested indexes that cannot be read are
// passed over.
func (l *Layout) indexManifests(desc ocispec.Descriptor, depth int) ([]ocispec.Descriptor, error) {
	if depth > 8 {
		return nil, fmt.Errorf("index %s: indexes nested too deeply", desc.Digest)
	}
	idx, err := l.ReadIndex(desc)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, c := range idx.Manifests {
		c = l.typed(c)
		if IsIndex(c.MediaType) {
			if sub, err := l.indexManifests(c, depth+1); err == nil {
				out = append(out, sub...)
			}
			continue
		}
		if !IsManifest(c.MediaType) {
			continue
		}
		if c.Platform == nil {
			// The platform is optional in an index: take it from the
			// image's config.
			img, err := l.ReadImage(c)
			if err != nil {
				continue
			}
			c.Platform = &ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
		}
		out = append(out, c)
	}
	return out, nil
}

// Platforms lists the platforms of the image desc points at: the platforms
// of an index's manifests, or the os/arch of a manifest's config.
// Other media types (artifacts) have no platform.
func (l *Layout) Platforms(desc ocispec.Descriptor) ([]ocispec.Platform, error) {
	desc = l.typed(desc)
	if !IsIndex(desc.MediaType) && !IsManifest(desc.MediaType) {
		return nil, nil
	}
	if IsIndex(desc.MediaType) {
		idx, err := l.ReadIndex(desc)
		if err != nil {
			return nil, err
		}
		var out []ocispec.Platform
		for _, c := range idx.Manifests {
			c = l.typed(c)
			switch {
			case IsIndex(c.MediaType):
				sub, err := l.Platforms(c)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			case c.Platform != nil:
				if c.Platform.OS == "unknown" {
					continue // attestation manifests
				}
				out = append(out, *c.Platform)
			case IsManifest(c.MediaType):
				// No platform in the index: the image's config says.
				sub, err := l.Platforms(c)
				if err != nil {
					return nil, err
				}
				out = append(out, sub...)
			}
		}
		return out, nil
	}
	img, err := l.ReadImage(desc)
	if err != nil {
		return nil, err
	}
	if !IsConfig(img.Manifest.Config.MediaType) {
		return nil, nil // an artifact
	}
	return []ocispec.Platform{{
		OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant,
		OSVersion: img.Config.OSVersion, OSFeatures: img.Config.OSFeatures,
	}}, nil
}
