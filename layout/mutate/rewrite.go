// Package mutate changes images in a layout without unpacking them:
// configs, manifests and indexes are rewritten, layers are added or
// swapped, and no existing layer blob is read or changed unless a caller
// asks for it.
//
// Rewrite is the walk every change shares: it hands each platform's image
// of an index (nested indexes too) to a function that returns the image to
// put in its place, and rewrites the indexes on the way up. Mutate
// (config and annotation edits), Append (new layers) and Rebase (another
// base image) are built on it.
//
// Nothing is named in index.json here: the caller names the new root
// (layout.Tag or AddUntagged) once everything it points at is stored, and
// on failure takes back the blobs written (layout.Undo or Discard).
package mutate

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// ErrNotIndex means a change meant for an index (index annotations) was
// asked of an image that is a single manifest.
var ErrNotIndex = errors.New("not an image index")

// ImageFunc returns what replaces img: the descriptor of a manifest it
// stored in the layout (see PutImage), or img.Descriptor to keep img as
// it is. platform is img's platform, as the index lists it or, where the
// index does not, as its config says.
type ImageFunc func(ctx context.Context, img *layout.Image, platform ocispec.Platform) (ocispec.Descriptor, error)

// RewriteOptions say which images Rewrite changes.
type RewriteOptions struct {
	// Platforms selects the images of an index that fn is given: each
	// platform must match at least one (ErrNoPlatform otherwise). None
	// means every image. Attestation manifests (platform unknown/unknown)
	// are never given to fn and stay as they are.
	Platforms []ocispec.Platform
	// Index, when set, edits the top index before it is stored (its
	// annotations, say), whether or not an image in it changed. Nested
	// indexes are not given to it. A root that is a single manifest with
	// Index set is ErrNotIndex.
	Index func(*layout.Index) error
}

// Changed is one image Rewrite replaced.
type Changed struct {
	Platform ocispec.Platform
	Old, New ocispec.Descriptor
}

// Result is what Rewrite made.
type Result struct {
	// Root is the new image or index; root itself when nothing changed.
	Root ocispec.Descriptor
	// Images are the images replaced, in the order they were visited;
	// an image listed twice in the indexes is replaced once.
	Images []Changed
}

// maxDepth bounds how deeply indexes may nest.
const maxDepth = 8

// Rewrite calls fn for every image root reaches (root itself when it is
// a manifest) that opts select, and stores every index on the way whose
// entries changed, its other fields kept. Each entry keeps its
// annotations and platform; its digest, size and media type become those
// fn returned, and the os, architecture, variant and os version of its
// platform those of fn's descriptor when it carries a platform.
//
// The root descriptor's own annotations (index.json names) are not
// carried over to Result.Root. Rewrite writes blobs only (the caller
// names the result) and stops with ctx's error between images.
func Rewrite(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, opts RewriteOptions, fn ImageFunc) (*Result, error) {
	root, err := typed(l, root)
	if err != nil {
		return nil, err
	}
	root.Annotations = nil
	w := &rewriter{l: l, opts: opts, fn: fn, done: map[digest.Digest]ocispec.Descriptor{}, matched: make([]bool, len(opts.Platforms))}
	res := &Result{Root: root}
	switch {
	case layout.IsManifest(root.MediaType):
		if opts.Index != nil {
			return nil, fmt.Errorf("image %s: %w: it is a single manifest", root.Digest, ErrNotIndex)
		}
		nd, err := w.image(ctx, root, nil)
		if err != nil {
			return nil, err
		}
		res.Root = nd
		res.Root.Platform = nil
	case layout.IsIndex(root.MediaType):
		nd, err := w.index(ctx, root, 0)
		if err != nil {
			return nil, err
		}
		res.Root = nd
	default:
		return nil, fmt.Errorf("%s: media type %q is not an image", root.Digest, root.MediaType)
	}
	for i, ok := range w.matched {
		if !ok {
			return nil, fmt.Errorf("image %s: %w %s", root.Digest, layout.ErrNoPlatform, platforms.Format(opts.Platforms[i]))
		}
	}
	res.Images = w.changed
	return res, nil
}

type rewriter struct {
	l    *layout.Layout
	opts RewriteOptions
	fn   ImageFunc
	// done maps each image already given to fn to what replaced it.
	done    map[digest.Digest]ocispec.Descriptor
	matched []bool // per opts.Platforms: some image had it
	changed []Changed
}

// image gives the manifest d to fn when it is selected, and returns what
// replaces it (d itself when nothing does). p is its platform as an index
// lists it, or nil.
func (w *rewriter) image(ctx context.Context, d ocispec.Descriptor, p *ocispec.Platform) (ocispec.Descriptor, error) {
	if nd, ok := w.done[d.Digest]; ok {
		return nd, nil
	}
	if err := ctx.Err(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if p != nil && p.OS == "unknown" {
		return d, nil // an attestation, not an image
	}
	img, err := w.l.ReadImage(d)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	plat := ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant, OSVersion: img.Config.OSVersion}
	if p != nil {
		plat = *p
	}
	if !w.selected(plat) {
		return d, nil
	}
	nd, err := w.fn(ctx, img, plat)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s (%s): %w", d.Digest, platforms.Format(plat), err)
	}
	w.done[d.Digest] = nd
	if nd.Digest != d.Digest {
		w.changed = append(w.changed, Changed{Platform: plat, Old: d, New: nd})
	}
	return nd, nil
}

// selected says whether opts select an image of platform p, and records
// which of opts.Platforms matched it.
func (w *rewriter) selected(p ocispec.Platform) bool {
	if len(w.opts.Platforms) == 0 {
		return true
	}
	got := platforms.Normalize(p)
	hit := false
	for i, want := range w.opts.Platforms {
		if platforms.NewMatcher(platforms.Normalize(want)).Match(got) {
			w.matched[i] = true
			hit = true
		}
	}
	return hit
}

// index rewrites the index d and returns its replacement.
func (w *rewriter) index(ctx context.Context, d ocispec.Descriptor, depth int) (ocispec.Descriptor, error) {
	if depth > maxDepth {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: indexes nested too deeply", d.Digest)
	}
	idx, err := w.l.ReadIndex(d)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	changed := false
	for i, c := range idx.Manifests {
		c, err := typed(w.l, c)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("index %s: %w", d.Digest, err)
		}
		var nd ocispec.Descriptor
		switch {
		case layout.IsIndex(c.MediaType):
			nd, err = w.index(ctx, c, depth+1)
		case layout.IsManifest(c.MediaType):
			nd, err = w.image(ctx, c, c.Platform)
		default:
			continue // an artifact: kept as it is
		}
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if nd.Digest == c.Digest {
			continue
		}
		changed = true
		e := idx.Manifests[i]
		e.Digest, e.Size, e.MediaType = nd.Digest, nd.Size, nd.MediaType
		e.Data = nil
		if nd.Platform != nil && e.Platform != nil {
			np := *e.Platform
			np.OS, np.Architecture, np.Variant = nd.Platform.OS, nd.Platform.Architecture, nd.Platform.Variant
			if nd.Platform.OSVersion != "" {
				np.OSVersion = nd.Platform.OSVersion
			}
			e.Platform = &np
		}
		idx.Manifests[i] = e
	}
	if depth == 0 && w.opts.Index != nil {
		before, err := idx.MarshalJSON()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if err := w.opts.Index(idx); err != nil {
			return ocispec.Descriptor{}, err
		}
		after, err := idx.MarshalJSON()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		changed = changed || string(before) != string(after)
	}
	if !changed {
		return d, nil
	}
	nd, err := w.l.PutJSON(d.MediaType, idx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store index: %w", err)
	}
	out := d
	out.Digest, out.Size, out.Data = nd.Digest, nd.Size, nil
	return out, nil
}

// typed fills in the media type of a descriptor that gives none, from its
// blob.
func typed(l *layout.Layout, d ocispec.Descriptor) (ocispec.Descriptor, error) {
	if d.MediaType != "" {
		return d, nil
	}
	if d.Size < 0 || d.Size > layout.MaxManifestSize {
		return d, nil // not a manifest or an index: left as it is
	}
	b, err := l.ReadBlob(d, layout.MaxManifestSize)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", d.Digest, err)
	}
	d.MediaType = layout.SniffMediaType(b)
	return d, nil
}

// EditAnnotations applies edits to annotations and returns the result,
// nil when none are left.
func EditAnnotations(annotations map[string]string, edits []Setting) map[string]string {
	if len(edits) == 0 {
		return annotations
	}
	out := make(map[string]string, len(annotations)+len(edits))
	for k, v := range annotations {
		out[k] = v
	}
	for _, e := range edits {
		if e.Remove {
			delete(out, e.Key)
		} else {
			out[e.Key] = e.Value
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// platformOf is the platform a config declares.
func platformOf(c ocispec.Image) ocispec.Platform {
	return ocispec.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant, OSVersion: c.OSVersion, OSFeatures: slices.Clone(c.OSFeatures)}
}
