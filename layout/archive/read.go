package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
)

// Limits on what an archive may make strata hold in memory.
const (
	maxEntries   = 1 << 20
	maxJSONFile  = layout.MaxManifestSize
	maxLinkHops  = 16
	maxDockerImg = 1 << 16
	maxLayers    = 1 << 12
)

// dockerName is a name read from an archive, fully qualified as docker,
// containerd and podman record it (ov1:latest is
// docker.io/library/ov1:latest), or as it is when it is no docker name.
func dockerName(n string) string {
	if full := layout.NormalizeName(n); full != "" {
		return full
	}
	return n
}

// ReadOptions selects what Read takes out of an archive.
type ReadOptions struct {
	// Name, when set, selects the images recorded under that name (or an
	// equivalent spelling of it: busybox is docker.io/library/busybox:latest).
	Name string
	// Copy selects platforms out of indexes; see layout.CopyOptions.
	Copy layout.CopyOptions
	// Partial reads a delta bundle (archive.WriteOptions.Since): blobs
	// the archive lacks are taken from the destination layout, and the
	// images are then verified whole as any other. Blobs that neither
	// holds fail the read with an *IncompleteError naming them all, and
	// the destination is left as it was.
	Partial bool
	// Referrers also reads the referrers the archive's OCI layout holds
	// for the images read (of what is selected of them), recursively:
	// they are returned in Image.Referrers, and entries that are
	// referrers of another image read are no images of their own.
	Referrers bool
}

// Read reads an archive of either format (optionally gzip, zstd or xz
// compressed as a whole) from r and copies its images into dst. It returns
// the images with the names the archive gives them, fully qualified
// (docker.io/library/ov1:latest for docker save's ov1:latest), except an
// OCI ref.name that is a bare tag (v1, as skopeo writes it), which stays
// as it is; nothing is named in dst. r is read once, front to back.
//
// Whatever the dialect (index.json, manifest.json, pre-1.10 repositories),
// every image is checked with layout.VerifyImage, layers included, before
// anything reaches dst: each layer must decompress whole into a tar
// archive whose digest is its config's diff_id, and configs must be
// within layout.MaxConfigSize. Cancelling ctx stops the read within a
// megabyte and the checks and copies between blobs; dst is left as it
// was. A read blocked in r is not interrupted (close r to end it).
func Read(ctx context.Context, r io.Reader, dst *layout.Layout, opts ReadOptions) ([]Image, error) {
	if err := dst.Hold(); err != nil {
		return nil, err
	}
	stateDir, err := dst.MakeStateDir()
	if err != nil {
		return nil, err
	}
	work, err := tempdir.Make(stateDir, layout.ArchiveWorkPrefix)
	if err != nil {
		return nil, fmt.Errorf("create staging layout: %w", err)
	}
	defer work.Remove()
	tmp, err := layout.Init(filepath.Join(work.Path, "layout"))
	if err != nil {
		return nil, fmt.Errorf("create staging layout: %w", err)
	}
	defer tmp.Close()

	a, err := scan(ctx, ctxio.Reader(ctx, r), tmp)
	if err != nil {
		return nil, err
	}
	layers := tmp.LayerChecker()
	imgs, err := a.images(ctx, tmp, layers)
	if err != nil {
		return nil, err
	}
	if imgs, err = selectNamed(imgs, opts.Name); err != nil {
		return nil, err
	}
	var from *layout.Layout
	if opts.Partial {
		from = dst
	}
	var ri *layout.ReferrerIndex
	if opts.Referrers {
		if ri, imgs, err = a.referrerIndex(ctx, tmp, imgs); err != nil {
			return nil, err
		}
	} else if imgs, err = a.withoutReferrers(ctx, tmp, imgs); err != nil {
		return nil, err
	}
	if err := a.check(ctx, tmp, imgs, layers, opts.Copy, from); err != nil {
		return nil, err
	}
	if ri != nil {
		if err := a.checkReferrers(ctx, tmp, ri, imgs, layers, from); err != nil {
			return nil, err
		}
	}
	return copyOut(ctx, dst, tmp, imgs, opts.Copy.OnBlob)
}

// referrerIndex finds the referrers among the entries of the archive's
// index.json and leaves out of imgs those that travel as referrers of
// another image: untagged, or named only by cosign's tags.
func (a *scanned) referrerIndex(ctx context.Context, tmp *layout.Layout, imgs []Image) (*layout.ReferrerIndex, []Image, error) {
	var entries []ocispec.Descriptor
	if ib, ok := a.small["index.json"]; ok {
		if idx, err := layout.ParseIndex(ib); err == nil {
			entries = idx.Manifests
		}
	}
	ri, err := tmp.ReferrerIndexOf(ctx, entries)
	if err != nil {
		return nil, nil, err
	}
	roots := make([]ocispec.Descriptor, len(imgs))
	for i, img := range imgs {
		roots[i] = img.Descriptor
	}
	carried, err := ri.Carried(ctx, roots)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
	}
	kept := imgs[:0]
	for _, img := range imgs {
		if carried[img.Descriptor.Digest] && !slices.ContainsFunc(img.Names, func(n string) bool { return !layout.IsReferrerName(n) }) {
			continue
		}
		kept = append(kept, img)
	}
	return ri, kept, nil
}

// withoutReferrers leaves out of imgs the untagged referrers (signatures,
// SBOMs): without ReadOptions.Referrers they stay behind, as copies leave
// them.
func (a *scanned) withoutReferrers(ctx context.Context, tmp *layout.Layout, imgs []Image) ([]Image, error) {
	var roots []ocispec.Descriptor
	for _, img := range imgs {
		if len(img.Names) == 0 {
			roots = append(roots, img.Descriptor)
		}
	}
	if len(roots) == 0 {
		return imgs, nil
	}
	ri, err := tmp.ReferrerIndexOf(ctx, roots)
	if err != nil {
		return nil, err
	}
	kept := imgs[:0]
	for _, img := range imgs {
		if _, ok := ri.IsUntaggedReferrer(img.Descriptor.Digest); ok && len(img.Names) == 0 {
			continue
		}
		kept = append(kept, img)
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("%w: it holds only referrers (signatures, SBOMs), not their images", ErrNoImage)
	}
	return kept, nil
}

// checkReferrers finds the referrers of each image as selected and checks
// each is whole, as images are checked.
func (a *scanned) checkReferrers(ctx context.Context, tmp *layout.Layout, ri *layout.ReferrerIndex, imgs []Image, layers *layout.LayerChecker, from *layout.Layout) error {
	seen := map[digest.Digest]bool{}
	for i := range imgs {
		refs, err := ri.Closure(ctx, imgs[i].Descriptor)
		if err != nil {
			return fmt.Errorf("%w: image %s: %w", ErrInvalidArchive, imgs[i].Descriptor.Digest, err)
		}
		if from != nil {
			// A delta bundle leaves out what its base holds of referrers too.
			var missing []ocispec.Descriptor
			for _, r := range refs {
				m, err := completeFrom(ctx, tmp, from, r.Descriptor, seen, 0)
				if err != nil {
					return err
				}
				missing = append(missing, m...)
			}
			if len(missing) > 0 {
				return &IncompleteError{Layout: from.Dir(), Missing: missing}
			}
		}
		for _, r := range refs {
			if err := tmp.VerifyImage(ctx, r.Descriptor, layout.VerifyOptions{DiffIDs: true, Layers: layers}); err != nil {
				return fmt.Errorf("referrer %s of %s: %w", r.Descriptor.Digest, r.Subject, a.explain(ctx, err))
			}
		}
		imgs[i].Referrers = refs
	}
	return nil
}

// selectNamed keeps the images name selects: all for "", one by @N or
// @DIGEST, else those recorded under name or an equivalent spelling.
func selectNamed(imgs []Image, name string) ([]Image, error) {
	if n, ok := strings.CutPrefix(name, "@"); ok {
		return selectBy(imgs, n)
	}
	if name == "" {
		return imgs, nil
	}
	var sel []Image
	for _, img := range imgs {
		for _, n := range img.Names {
			if sameName(n, name) {
				sel = append(sel, Image{Descriptor: img.Descriptor, Names: []string{n}})
				break
			}
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoImage, name)
	}
	return sel, nil
}

// check selects platforms, then checks that every image is whole and
// consistent before anything reaches the destination, so a refused
// archive adds not even a blob to it. An index may list platforms whose
// blobs the archive lacks (docker saves only the ones it pulled); only
// the selected ones must be there. imgs get the selected descriptors.
// With from, blobs the archive lacks are taken from that layout first
// (a delta bundle), and a blob neither holds fails the check with an
// *IncompleteError listing every one.
func (a *scanned) check(ctx context.Context, tmp *layout.Layout, imgs []Image, layers *layout.LayerChecker, opts layout.CopyOptions, from *layout.Layout) error {
	if from != nil {
		var missing []ocispec.Descriptor
		seen := map[digest.Digest]bool{}
		for i := range imgs {
			d, err := tmp.SelectPlatforms(imgs[i].Descriptor, opts)
			if err != nil {
				continue // said below, as for any archive
			}
			m, err := completeFrom(ctx, tmp, from, d, seen, 0)
			if err != nil {
				return err
			}
			missing = append(missing, m...)
		}
		if len(missing) > 0 {
			return &IncompleteError{Layout: from.Dir(), Missing: missing}
		}
	}
	for i := range imgs {
		d, err := tmp.SelectPlatforms(imgs[i].Descriptor, opts)
		if errors.Is(err, layout.ErrNoPlatform) && len(opts.Platforms) == 0 {
			// Docker saves an image's whole index but only the platform it
			// pulled: with no platform asked for, that one will do.
			d, err = onlyComplete(tmp, imgs[i].Descriptor, err)
		}
		if err != nil {
			return fmt.Errorf("image %s: %w", imgs[i].Descriptor.Digest, err)
		}
		if err := tmp.VerifyImage(ctx, d, layout.VerifyOptions{DiffIDs: true, Layers: layers}); err != nil {
			return a.explain(ctx, err)
		}
		imgs[i].Descriptor = d
	}
	return nil
}

// copyOut copies the checked images from the staging layout into dst as
// one operation: a failure (or a cancel) takes back what the images
// before it added.
func copyOut(ctx context.Context, dst, tmp *layout.Layout, imgs []Image, onBlob func(ocispec.Descriptor, blob.CopyMethod)) (_ []Image, err error) {
	copyOpts := layout.CopyOptions{AllPlatforms: true, OnBlob: onBlob, Added: &layout.Added{}}
	defer func() {
		if err != nil {
			_, _ = dst.Discard(copyOpts.Added)
		}
	}()
	out := make([]Image, 0, len(imgs))
	for _, img := range imgs {
		d, err := layout.CopyImage(ctx, dst, tmp, img.Descriptor, copyOpts)
		if err != nil {
			return nil, err
		}
		if err := layout.CopyReferrers(ctx, dst, tmp, img.Referrers, copyOpts); err != nil {
			return nil, err
		}
		out = append(out, Image{Descriptor: d, Names: img.Names, Referrers: img.Referrers})
	}
	return out, nil
}

// onlyComplete returns the one manifest of index desc whose blobs are all
// in l, or selErr when there is not exactly one.
func onlyComplete(l *layout.Layout, desc ocispec.Descriptor, selErr error) (ocispec.Descriptor, error) {
	idx, err := l.ReadIndex(desc)
	if err != nil {
		return ocispec.Descriptor{}, selErr
	}
	var found []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if layout.IsManifest(m.MediaType) && complete(l, m) == nil {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		return ocispec.Descriptor{}, selErr
	}
	return found[0], nil
}

// selectBy picks images by @N (the Nth image, from 0, in the archive's
// order, as skopeo's docker-archive:FILE:@N does) or by @DIGEST.
func selectBy(imgs []Image, sel string) ([]Image, error) {
	if i, err := strconv.Atoi(sel); err == nil {
		if i < 0 || i >= len(imgs) {
			return nil, fmt.Errorf("%w: @%d: the archive holds %d images", ErrNoImage, i, len(imgs))
		}
		return imgs[i : i+1], nil
	}
	d := digest.Digest(sel)
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%w: @%s is neither an image number nor a digest", ErrNoImage, sel)
	}
	for _, img := range imgs {
		if img.Descriptor.Digest == d {
			return []Image{img}, nil
		}
	}
	return nil, fmt.Errorf("%w: @%s", ErrNoImage, sel)
}

// complete checks that every blob desc reaches is in l.
func complete(l *layout.Layout, desc ocispec.Descriptor) error {
	err := l.Walk(desc, func(d ocispec.Descriptor, _ []byte) error {
		if !l.Blobs().Has(d.Digest, d.Size) {
			return fmt.Errorf("%w: blob %s (%s) is missing or has the wrong size", ErrInvalidArchive, d.Digest, d.MediaType)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) || errors.Is(err, blob.ErrSizeMismatch) {
			return fmt.Errorf("%w: image %s: %w", ErrInvalidArchive, desc.Digest, err)
		}
		return fmt.Errorf("image %s: %w", desc.Digest, err)
	}
	return nil
}

// explain turns VerifyImage's error into the archive's: ErrInvalidArchive,
// naming the entry a bad layer came from.
func (a *scanned) explain(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return err
	}
	var le *layout.LayerError
	if errors.As(err, &le) {
		if names := a.namesOf(le.Layer); len(names) > 0 {
			return fmt.Errorf("%w: entry %s: %w", ErrInvalidArchive, strings.Join(names, ", "), err)
		}
	}
	return fmt.Errorf("%w: %w", ErrInvalidArchive, err)
}

// namesOf lists the entries (files and links to them) whose content is
// blob d, sorted.
func (a *scanned) namesOf(d digest.Digest) []string {
	var out []string
	for name, e := range a.files {
		if e.d == d {
			out = append(out, name)
		}
	}
	for name := range a.links {
		if e, err := a.lookup(name); err == nil && e.d == d {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// images works out the archive's images and stores any manifest they need
// in tmp. The OCI layout part is preferred: it carries the manifests
// exactly as they were, so digests survive a round trip.
func (a *scanned) images(ctx context.Context, tmp *layout.Layout, layers *layout.LayerChecker) ([]Image, error) {
	if ib, ok := a.small["index.json"]; ok {
		imgs, err := a.ociImages(ib)
		if _, hasDocker := a.small["manifest.json"]; err == nil || !hasDocker {
			return imgs, err
		}
		// An unusable OCI part beside a manifest.json: read the latter.
	}
	if mb, ok := a.small["manifest.json"]; ok {
		return a.dockerImages(mb, tmp)
	}
	if a.isLegacy() {
		return a.legacyImages(ctx, tmp, layers)
	}
	return nil, fmt.Errorf("%w: it has no index.json, manifest.json or repositories", ErrInvalidArchive)
}

func (a *scanned) ociImages(ib []byte) ([]Image, error) {
	idx, err := layout.ParseIndex(ib)
	if err != nil {
		return nil, fmt.Errorf("%w: index.json: %v", ErrInvalidArchive, err)
	}
	var out []Image
	pos := map[digest.Digest]int{}
	for _, m := range idx.Manifests {
		// containerd and Docker 25 (and strata) put the full name in
		// io.containerd.image.name and only the tag in ref.name. A ref.name
		// alone is a name when it has a repository (podman writes the full
		// name there), else a tag as skopeo writes it, kept as it is.
		name := m.Annotations[layout.AnnotationRefName]
		if full := m.Annotations[layout.AnnotationImageName]; full != "" {
			name = dockerName(full)
		} else if !layout.IsBareTag(name) {
			name = dockerName(name)
		}
		d := m
		d.Annotations = nil
		for k, v := range m.Annotations {
			if k != layout.AnnotationRefName && k != layout.AnnotationImageName {
				if d.Annotations == nil {
					d.Annotations = map[string]string{}
				}
				d.Annotations[k] = v
			}
		}
		i, ok := pos[m.Digest]
		if !ok {
			i = len(out)
			pos[m.Digest] = i
			out = append(out, Image{Descriptor: d})
		}
		if name != "" {
			out[i].Names = append(out[i].Names, name)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: index.json lists no images", ErrInvalidArchive)
	}
	return out, nil
}

func (a *scanned) dockerImages(mb []byte, tmp *layout.Layout) ([]Image, error) {
	var entries []dockerEntry
	if err := json.Unmarshal(mb, &entries); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrInvalidArchive, err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: manifest.json lists no images", ErrInvalidArchive)
	}
	if len(entries) > maxDockerImg {
		return nil, fmt.Errorf("%w: manifest.json lists %d images", ErrInvalidArchive, len(entries))
	}
	out := make([]Image, 0, len(entries))
	for i, e := range entries {
		d, err := a.dockerManifest(e, tmp)
		if err != nil {
			return nil, fmt.Errorf("manifest.json image %d (%s): %w", i, strings.Join(e.RepoTags, ", "), err)
		}
		img := Image{Descriptor: d}
		for _, t := range e.RepoTags {
			img.Names = append(img.Names, dockerName(t))
		}
		out = append(out, img)
	}
	return out, nil
}

// dockerManifest builds a Docker schema2 manifest for one manifest.json
// element. Read checks it, like an image of any dialect, with
// layout.VerifyImage.
func (a *scanned) dockerManifest(e dockerEntry, tmp *layout.Layout) (ocispec.Descriptor, error) {
	if len(e.Layers) > maxLayers {
		return ocispec.Descriptor{}, fmt.Errorf("%w: %d layers, limit %d", ErrInvalidArchive, len(e.Layers), maxLayers)
	}
	ce, err := a.lookup(e.Config)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	// The platform, for selection, is the config's.
	cb, err := tmp.Blobs().ReadAll(ce.d, ce.size, layout.MaxConfigSize)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: config %s: %w", ErrInvalidArchive, e.Config, err)
	}
	cfg, err := layout.ParseImageConfig(cb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: config %s: %v", ErrInvalidArchive, e.Config, err)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: layout.MediaTypeDockerManifest,
		Config:    ocispec.Descriptor{MediaType: layout.MediaTypeDockerConfig, Digest: ce.d, Size: ce.size},
		Layers:    []ocispec.Descriptor{},
	}
	for i, lp := range e.Layers {
		le, err := a.lookup(lp)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %d: %w", i, err)
		}
		mt, err := layerMediaType(tmp.Blobs(), le)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %d (%s): %w", i, lp, err)
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: le.d, Size: le.size})
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	d, err := tmp.PutBytes(layout.MediaTypeDockerManifest, b)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	d.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	return d, nil
}

// layerMediaType names the Docker media type of a layer file from its
// first bytes: uncompressed, gzip or zstd. Other compressions are refused:
// an image cannot carry them.
func layerMediaType(s *blob.Store, e entry) (string, error) {
	kind, err := layerCompression(s, e)
	if err != nil {
		return "", err
	}
	return dockerLayerType(kind)
}

func dockerLayerType(kind compression.Kind) (string, error) {
	switch kind {
	case compression.None:
		return layout.MediaTypeDockerLayer, nil
	case compression.Gzip:
		return layout.MediaTypeDockerLayerGzip, nil
	case compression.Zstd:
		return layout.MediaTypeDockerLayerZstd, nil
	}
	return "", fmt.Errorf("%w: layer compressed with %s, which images cannot use", ErrInvalidArchive, kind)
}

// layerCompression sniffs a layer file's compression.
func layerCompression(s *blob.Store, e entry) (compression.Kind, error) {
	r, err := s.Open(e.d, e.size)
	if err != nil {
		return "", err
	}
	defer r.Close()
	var head [8]byte
	n, err := io.ReadFull(r, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	return compression.Detect(head[:n]), nil
}
