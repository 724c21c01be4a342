package layout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Errors of the index commands.
var (
	// ErrNameTaken means a new index would take a name that already names
	// an image.
	ErrNameTaken = errors.New("name already names an image")
	// ErrNotIndex means an image that should be an index is a manifest.
	ErrNotIndex = errors.New("not an image index")
	// ErrNotInIndex means nothing an index lists matches what was asked
	// to be removed.
	ErrNotInIndex = errors.New("no such entry in the index")
)

// IndexSource is an image to list in an index: a manifest, or an index
// whose entries are all listed. It may be in another layout.
type IndexSource struct {
	Layout     *Layout
	Descriptor ocispec.Descriptor
}

// IndexOptions say what an index built by CreateIndex or AddToIndex
// records beyond its entries.
type IndexOptions struct {
	// Annotations go on the index, added to those it has.
	Annotations map[string]string
}

// CreateIndex builds a new image index listing srcs, stores it and names
// it name; name must not name anything yet. Each manifest is listed with
// the platform of its config (os, architecture, variant, os.version,
// os.features), as buildah manifest add and crane index append record
// it; an index among srcs contributes its entries as it lists them.
// Sources in other layouts are copied in, every blob verified. An entry
// whose platform another source has already is replaced by the later
// one. It returns the new index's descriptor.
func (l *Layout) CreateIndex(ctx context.Context, name string, srcs []IndexSource, o IndexOptions) (ocispec.Descriptor, error) {
	if err := checkIndexName(name); err != nil {
		return ocispec.Descriptor{}, err
	}
	if _, err := l.Resolve(name); err == nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %w", l.dir, name, ErrNameTaken)
	} else if !errors.Is(err, ErrRefNotFound) {
		return ocispec.Descriptor{}, err
	}
	idx := &Index{Index: ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}}
	return l.editIndex(ctx, name, idx, srcs, o)
}

// AddToIndex adds srcs to the index name names (see CreateIndex for how
// entries are made) and names the result name. An entry for a platform a
// source has is replaced; one of the same digest is not listed twice.
func (l *Layout) AddToIndex(ctx context.Context, name string, srcs []IndexSource, o IndexOptions) (ocispec.Descriptor, error) {
	idx, err := l.namedIndex(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return l.editIndex(ctx, name, idx, srcs, o)
}

// RemoveFromIndex removes from the index name names the entries each of
// which matches one of sel: a digest (sha256:... or @sha256:...) or a
// platform (os/arch[/variant], matched exactly after normalisation), and
// names the result name. A selector that matches nothing is an error
// wrapping ErrNotInIndex, and nothing changes.
func (l *Layout) RemoveFromIndex(ctx context.Context, name string, sel []string) (ocispec.Descriptor, error) {
	idx, err := l.namedIndex(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var sels []*indexSelector
	for _, s := range sel {
		x, err := parseIndexSelector(s)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		sels = append(sels, x)
	}
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		gone := false
		for _, x := range sels {
			if (x.d != "" && m.Digest == x.d) || (x.p != nil && m.Platform != nil && samePlatform(platforms.Normalize(*m.Platform), *x.p)) {
				x.hit, gone = true, true
			}
		}
		if !gone {
			kept = append(kept, m)
		}
	}
	for _, x := range sels {
		if !x.hit {
			return ocispec.Descriptor{}, fmt.Errorf("%s:%s: %q: %w", l.dir, name, x.raw, ErrNotInIndex)
		}
	}
	idx.Manifests = kept
	return l.storeIndex(name, idx, nil)
}

// indexSelector is an argument of RemoveFromIndex: a digest or a
// platform, and whether an entry matched it.
type indexSelector struct {
	raw string
	d   digest.Digest
	p   *ocispec.Platform
	hit bool
}

// parseIndexSelector reads s as a digest (sha256:... or @sha256:...) or,
// failing that, a platform (os/arch[/variant], normalised).
func parseIndexSelector(s string) (*indexSelector, error) {
	x := &indexSelector{raw: s}
	if d, ok := IsDigestRef(s); ok {
		x.d = d
	} else if d := digest.Digest(s); d.Validate() == nil {
		x.d = d
	} else {
		p, err := ParsePlatform(s)
		if err != nil || s == "" {
			return nil, fmt.Errorf("%w %q: neither a digest nor a platform", ErrInvalidRef, s)
		}
		x.p = &p
	}
	if x.p == nil {
		if err := x.d.Validate(); err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrInvalidRef, s, err)
		}
	}
	return x, nil
}

func checkIndexName(name string) error {
	if err := ValidateRef(name); err != nil {
		return err
	}
	if _, ok := IsDigestRef(name); ok {
		return fmt.Errorf("%w %q: an index is named by a tag or name, not a digest", ErrInvalidRef, name)
	}
	return nil
}

// namedIndex reads the index name names.
func (l *Layout) namedIndex(name string) (*Index, error) {
	if err := checkIndexName(name); err != nil {
		return nil, err
	}
	desc, err := l.Resolve(name)
	if err != nil {
		return nil, err
	}
	desc = l.typed(desc)
	if !IsIndex(desc.MediaType) {
		return nil, fmt.Errorf("%s:%s: %w: it is a %s", l.dir, name, ErrNotIndex, desc.MediaType)
	}
	return l.ReadIndex(desc)
}

// editIndex adds srcs to idx, copying their blobs in, and stores and
// names the result.
func (l *Layout) editIndex(ctx context.Context, name string, idx *Index, srcs []IndexSource, o IndexOptions) (_ ocispec.Descriptor, err error) {
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	added := &Added{}
	defer func() {
		if err != nil {
			_, _ = l.Discard(added)
		}
	}()
	for _, s := range srcs {
		if err := ctx.Err(); err != nil {
			return ocispec.Descriptor{}, err
		}
		src := s.Layout
		if src == nil {
			src = l
		}
		desc := src.typed(bareDescriptor(s.Descriptor))
		if src != l {
			if _, err := CopyImage(ctx, l, src, desc, CopyOptions{AllPlatforms: true, Added: added}); err != nil {
				return ocispec.Descriptor{}, err
			}
		}
		entries, err := l.indexEntries(desc)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		for _, e := range entries {
			idx.addEntry(e)
		}
	}
	if len(o.Annotations) > 0 {
		if idx.Annotations == nil {
			idx.Annotations = map[string]string{}
		}
		for k, v := range o.Annotations {
			idx.Annotations[k] = v
		}
	}
	return l.storeIndex(name, idx, added)
}

// indexEntries are the entries desc contributes to an index: a manifest
// with its config's platform, or an index's entries as it lists them.
func (l *Layout) indexEntries(desc ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	switch {
	case IsIndex(desc.MediaType):
		src, err := l.ReadIndex(desc)
		if err != nil {
			return nil, err
		}
		return src.Manifests, nil
	case IsManifest(desc.MediaType):
		img, err := l.ReadImage(desc)
		if err != nil {
			return nil, err
		}
		if !IsConfig(img.Manifest.Config.MediaType) {
			return nil, fmt.Errorf("manifest %s: %w: its config is a %s, not an image config", desc.Digest, ErrInvalidImage, img.Manifest.Config.MediaType)
		}
		c := img.Config
		e := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
		e.Platform = &ocispec.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant, OSVersion: c.OSVersion, OSFeatures: c.OSFeatures}
		if e.Platform.OS == "" || e.Platform.Architecture == "" {
			return nil, fmt.Errorf("manifest %s: %w: its config names no os and architecture", desc.Digest, ErrInvalidImage)
		}
		return []ocispec.Descriptor{e}, nil
	}
	return nil, fmt.Errorf("%s: %w: media type %q is neither a manifest nor an index", desc.Digest, ErrInvalidImage, desc.MediaType)
}

// addEntry lists e, replacing an entry of the same digest or, for an
// image with a platform, of the same platform.
func (idx *Index) addEntry(e ocispec.Descriptor) {
	kept := idx.Manifests[:0]
	pos := -1
	for _, m := range idx.Manifests {
		same := m.Digest == e.Digest
		if !same && e.Platform != nil && m.Platform != nil && e.Platform.OS != "unknown" {
			same = samePlatform(platforms.Normalize(*m.Platform), platforms.Normalize(*e.Platform))
		}
		if same {
			if pos < 0 {
				pos = len(kept)
				kept = append(kept, e)
			}
			continue
		}
		kept = append(kept, m)
	}
	if pos < 0 {
		kept = append(kept, e)
	}
	idx.Manifests = kept
}

// storeIndex stores idx and names it name. A Docker manifest list stays
// one only while it lists Docker manifests alone.
func (l *Layout) storeIndex(name string, idx *Index, added *Added) (ocispec.Descriptor, error) {
	if idx.MediaType == MediaTypeDockerManifestList && slices.ContainsFunc(idx.Manifests, func(m ocispec.Descriptor) bool {
		return m.MediaType != MediaTypeDockerManifest
	}) {
		idx.MediaType = ocispec.MediaTypeImageIndex
	}
	if idx.MediaType == "" {
		idx.MediaType = ocispec.MediaTypeImageIndex
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode index: %w", err)
	}
	had := l.blobs.Has(digest.FromBytes(b), int64(len(b)))
	d, err := l.PutBytes(idx.MediaType, b)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store index: %w", err)
	}
	if added != nil && !had {
		added.Add(d.Digest)
	}
	if err := l.Tag(d, name); err != nil {
		return ocispec.Descriptor{}, err
	}
	return d, nil
}
