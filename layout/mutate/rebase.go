package mutate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// ErrNotBasedOn means an image does not start with the layers of the base
// it is to be rebased from (see NotBasedOnError).
var ErrNotBasedOn = errors.New("image is not based on the old base")

// ErrNoBase means a rebase was given no base image and the image names
// none in its annotations.
var ErrNoBase = errors.New("no base image")

// NotBasedOnError names the first layer in which an image and the old
// base it is said to be built on differ. It wraps ErrNotBasedOn.
type NotBasedOnError struct {
	Image, Base digest.Digest // manifests
	Platform    ocispec.Platform
	// Layer is the position (from 1) of the first layer that differs; the
	// image has fewer layers than the base when Got is zero.
	Layer      int
	Got, Want  ocispec.Descriptor // the image's layer, the base's
	GotDiffID  digest.Digest
	WantDiffID digest.Digest
}

func (e *NotBasedOnError) Error() string {
	head := fmt.Sprintf("image %s (%s): %v %s", e.Image, platforms.Format(e.Platform), ErrNotBasedOn, e.Base)
	switch {
	case e.Got.Digest == "":
		return fmt.Sprintf("%s: it has %d layers, the base %d", head, e.Layer-1, e.Layer)
	case e.Got.Digest != e.Want.Digest:
		return fmt.Sprintf("%s: layer %d is %s, the base's is %s", head, e.Layer, e.Got.Digest, e.Want.Digest)
	}
	return fmt.Sprintf("%s: layer %d (%s) has diff_id %s, the base's %s", head, e.Layer, e.Got.Digest, e.GotDiffID, e.WantDiffID)
}

// Unwrap makes errors.Is(err, ErrNotBasedOn) true.
func (e *NotBasedOnError) Unwrap() error { return ErrNotBasedOn }

// Ref is an image in a layout: a manifest or an index, and the name it
// goes by (for org.opencontainers.image.base.name; may be empty).
type Ref struct {
	Layout     *layout.Layout
	Descriptor ocispec.Descriptor
	Name       string
}

// RebaseOptions say what Rebase replaces with what.
type RebaseOptions struct {
	// Platforms selects the images of an index that are rebased; none
	// means every image.
	Platforms []ocispec.Platform
	// OldBase is the image the image was built on. Nil: each image's
	// org.opencontainers.image.base.digest annotation names it (the
	// index's, where a manifest has none), found in NewBase's layout,
	// else in the image's.
	OldBase *Ref
	// NewBase is the image to build on instead. Nil: each image's
	// org.opencontainers.image.base.name annotation names it, found in
	// the image's layout (the name's newer image: a base updated since).
	NewBase *Ref
	// Created, when set, is the config's new creation time; else the
	// image's is kept.
	Created *time.Time
}

// Rebase replaces, in every image root reaches that opts select, the
// layers of the old base with those of the new base, as crane rebase
// does: each image must start with the old base's layers (the same blob
// digests and diff_ids: NotBasedOnError otherwise); its config keeps
// everything but the platform (the new base's), rootfs.diff_ids (the new
// base's, then the image's own) and history (the new base's entries, then
// the image's entries past the old base's); its manifest lists the new
// base's layers, then its own, and records the new base in the
// org.opencontainers.image.base.digest and .name annotations. The old,
// image and new base of each platform are matched by platform. The new
// base's blobs are copied into l when it is another layout. Nothing is
// named; see Rewrite.
func Rebase(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, opts RebaseOptions) (*Result, error) {
	var rootAnn map[string]string
	if r, err := typed(l, root); err == nil && layout.IsIndex(r.MediaType) {
		idx, err := l.ReadIndex(r)
		if err != nil {
			return nil, err
		}
		rootAnn = idx.Annotations
	}
	return Rewrite(ctx, l, root, RewriteOptions{Platforms: opts.Platforms}, func(ctx context.Context, img *layout.Image, p ocispec.Platform) (ocispec.Descriptor, error) {
		ann := func(key string) string {
			if v := img.Manifest.Annotations[key]; v != "" {
				return v
			}
			return rootAnn[key]
		}
		nb, err := newBase(l, opts.NewBase, ann(ocispec.AnnotationBaseImageName))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		ob, err := oldBase(l, opts.OldBase, nb, ann(ocispec.AnnotationBaseImageDigest))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		return rebaseImage(ctx, l, img, p, ob, nb, opts)
	})
}

// newBase is the new base: given, or named by the image's base.name.
func newBase(l *layout.Layout, given *Ref, name string) (*Ref, error) {
	if given != nil {
		return given, nil
	}
	if name == "" {
		return nil, fmt.Errorf("%w: no new base given and the image has no %s annotation", ErrNoBase, ocispec.AnnotationBaseImageName)
	}
	d, err := l.Resolve(name)
	if err != nil {
		return nil, fmt.Errorf("new base %s (from the image's %s annotation): %w", name, ocispec.AnnotationBaseImageName, err)
	}
	return &Ref{Layout: l, Descriptor: d, Name: name}, nil
}

// oldBase is the old base: given, or the image named by the image's
// base.digest, looked for in the new base's layout, then in l.
func oldBase(l *layout.Layout, given, nb *Ref, dgst string) (*Ref, error) {
	if given != nil {
		return given, nil
	}
	if dgst == "" {
		return nil, fmt.Errorf("%w: no old base given and the image has no %s annotation", ErrNoBase, ocispec.AnnotationBaseImageDigest)
	}
	d := digest.Digest(dgst)
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s annotation %q: %w", ocispec.AnnotationBaseImageDigest, dgst, err)
	}
	for _, in := range []*layout.Layout{nb.Layout, l} {
		desc, err := in.Resolve("@" + d.String())
		if err == nil {
			return &Ref{Layout: in, Descriptor: desc}, nil
		}
		if !errors.Is(err, layout.ErrRefNotFound) {
			return nil, fmt.Errorf("old base %s: %w", d, err)
		}
	}
	where := "not in " + l.Dir()
	if nb.Layout != l {
		where = "in neither " + nb.Layout.Dir() + " nor " + l.Dir()
	}
	return nil, fmt.Errorf("%w: the old base %s (the image's %s annotation) is %s", ErrNoBase, d, ocispec.AnnotationBaseImageDigest, where)
}

// baseImage is r's image for platform p.
func baseImage(r *Ref, p ocispec.Platform, what string) (*layout.Image, error) {
	md, err := r.Layout.SelectManifest(r.Descriptor, &p)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, r.Descriptor.Digest, err)
	}
	img, err := r.Layout.ReadImage(md)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	got := platforms.Normalize(platformOf(img.Config))
	if !platforms.NewMatcher(platforms.Normalize(p)).Match(got) {
		return nil, fmt.Errorf("%s %s is %s: %w %s", what, md.Digest, platforms.Format(got), layout.ErrNoPlatform, platforms.Format(p))
	}
	return img, nil
}

func rebaseImage(ctx context.Context, l *layout.Layout, img *layout.Image, p ocispec.Platform, ob, nb *Ref, opts RebaseOptions) (ocispec.Descriptor, error) {
	old, err := baseImage(ob, p, "old base")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	nu, err := baseImage(nb, p, "new base")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := checkBasedOn(img, old, p); err != nil {
		return ocispec.Descriptor{}, err
	}
	n := len(old.Manifest.Layers)
	mt := manifestType(img)
	layers := make([]ocispec.Descriptor, 0, len(nu.Manifest.Layers)+len(img.Manifest.Layers)-n)
	for _, d := range nu.Manifest.Layers {
		if d.MediaType, err = LayerMediaType(mt, d.MediaType); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("new base %s: %w", nu.Descriptor.Digest, err)
		}
		layers = append(layers, d)
	}
	layers = append(layers, img.Manifest.Layers[n:]...)
	// The new base's layers into this layout, verified.
	if nb.Layout != l {
		if err := l.Hold(); err != nil {
			return ocispec.Descriptor{}, err
		}
		for _, d := range nu.Manifest.Layers {
			if len(d.URLs) > 0 && d.MediaType == layout.MediaTypeDockerForeignLayer {
				continue
			}
			if _, err := l.Blobs().CopyFrom(ctx, nb.Layout.Blobs(), d.Digest, d.Size); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("copy layer %s of the new base: %w", d.Digest, err)
			}
		}
	}
	cfg, err := rebaseConfig(img, old, nu, opts.Created)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	ann := baseAnnotations(img.Manifest.Annotations, &Base{Name: nb.Name, Descriptor: nb.Descriptor})
	return PutImage(l, img, cfg, layers, ann)
}

// checkBasedOn checks that img starts with old's layers: blob digests and
// diff_ids both.
func checkBasedOn(img, old *layout.Image, p ocispec.Platform) error {
	fail := func(i int) error {
		e := &NotBasedOnError{Image: img.Descriptor.Digest, Base: old.Descriptor.Digest, Platform: p, Layer: i + 1, Want: old.Manifest.Layers[i]}
		if i < len(old.Config.RootFS.DiffIDs) {
			e.WantDiffID = old.Config.RootFS.DiffIDs[i]
		}
		if i < len(img.Manifest.Layers) {
			e.Got = img.Manifest.Layers[i]
		}
		if i < len(img.Config.RootFS.DiffIDs) {
			e.GotDiffID = img.Config.RootFS.DiffIDs[i]
		}
		return e
	}
	for i, want := range old.Manifest.Layers {
		if i >= len(img.Manifest.Layers) || img.Manifest.Layers[i].Digest != want.Digest {
			return fail(i)
		}
		if i >= len(old.Config.RootFS.DiffIDs) || i >= len(img.Config.RootFS.DiffIDs) || img.Config.RootFS.DiffIDs[i] != old.Config.RootFS.DiffIDs[i] {
			return fail(i)
		}
	}
	return nil
}

// rebaseConfig is img's config on nu instead of old.
func rebaseConfig(img, old, nu *layout.Image, created *time.Time) ([]byte, error) {
	cfg, err := layout.ParseConfig(img.ConfigRaw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
	}
	np := nu.Config
	for key, v := range map[string]any{"architecture": np.Architecture, "os": np.OS, "variant": np.Variant, "os.version": np.OSVersion} {
		if v == "" {
			v = nil
		}
		if err := cfg.Set(key, v); err != nil {
			return nil, err
		}
	}
	var features any
	if len(np.OSFeatures) > 0 {
		features = np.OSFeatures
	}
	if err := cfg.Set("os.features", features); err != nil {
		return nil, err
	}
	n := len(old.Manifest.Layers)
	diffIDs := append(append([]digest.Digest{}, nu.Config.RootFS.DiffIDs...), img.Config.RootFS.DiffIDs[n:]...)
	if err := cfg.Set("rootfs", ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}); err != nil {
		return nil, err
	}
	hist, err := rebaseHistory(img, old, nu)
	if err != nil {
		return nil, err
	}
	if err := cfg.Set("history", hist); err != nil {
		return nil, err
	}
	if created != nil {
		if err := cfg.Set("created", created.UTC()); err != nil {
			return nil, err
		}
	}
	return cfg.Bytes()
}

// rebaseHistory is the new base's history, then the image's entries past
// the old base's, as crane's rebase makes it: an entry of the image stays
// when it comes after as many entries as the old base has, or when it or
// an earlier entry of its own describes a layer past the old base's.
// Layers without an entry get an empty one. Entries are kept as they are
// written. Nil (no history) when neither the image nor the new base has
// any.
func rebaseHistory(img, old, nu *layout.Image) ([]json.RawMessage, error) {
	ih, err := rawHistory(img)
	if err != nil {
		return nil, err
	}
	nh, err := rawHistory(nu)
	if err != nil {
		return nil, err
	}
	if ih == nil && nh == nil {
		return nil, nil
	}
	oh, err := rawHistory(old)
	if err != nil {
		return nil, err
	}
	out, err := keepHistory(nil, nh, len(nu.Manifest.Layers), 0, 0)
	if err != nil {
		return nil, fmt.Errorf("new base %s: %w", nu.Descriptor.Digest, err)
	}
	out, err = keepHistory(out, ih, len(img.Manifest.Layers), len(oh), len(old.Manifest.Layers)+1)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	return out, nil
}

// keepHistory appends to out the entries of hist (describing an image of
// nLayers layers) from entry fromEntry on, or from the entry whose layer
// count reaches fromLayer, and an empty entry for each layer from
// fromLayer on that hist does not describe.
func keepHistory(out []json.RawMessage, hist []historyEntry, nLayers, fromEntry, fromLayer int) ([]json.RawMessage, error) {
	layer := 0
	for i, h := range hist {
		if !h.empty {
			if layer >= nLayers {
				return nil, fmt.Errorf("malformed history: it describes at least %d layers, the image has %d", layer+1, nLayers)
			}
			layer++
		}
		if i >= fromEntry || layer >= fromLayer {
			out = append(out, h.raw)
		}
	}
	for ; layer < nLayers; layer++ {
		if layer+1 >= fromLayer {
			out = append(out, json.RawMessage(`{}`))
		}
	}
	return out, nil
}

// historyEntry is one history entry, as written.
type historyEntry struct {
	raw   json.RawMessage
	empty bool
}

func rawHistory(img *layout.Image) ([]historyEntry, error) {
	var doc struct {
		History []json.RawMessage `json:"history"`
	}
	if err := json.Unmarshal(img.ConfigRaw, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
	}
	if doc.History == nil {
		return nil, nil
	}
	out := make([]historyEntry, len(doc.History))
	for i, raw := range doc.History {
		var h struct {
			EmptyLayer bool `json:"empty_layer"`
		}
		if err := json.Unmarshal(raw, &h); err != nil {
			return nil, fmt.Errorf("config %s: history[%d]: %w", img.Manifest.Config.Digest, i, err)
		}
		out[i] = historyEntry{raw: raw, empty: h.EmptyLayer}
	}
	return out, nil
}
