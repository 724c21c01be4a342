package remote

import (
	"context"
	"fmt"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"
)

// Result describes a finished pull or push.
type Result struct {
	// Descriptor is the image that was copied: a manifest, or an index
	// when all platforms were copied.
	Descriptor ocispec.Descriptor
	// Reference is the registry side, pinned to the digest.
	Reference Reference
	// Name is the layout name the image was tagged with (pull only).
	Name string
	// UpToDate is set when the pull mode let Pull find the image in the
	// layout: without contacting the registry (PullMissing, PullNever) or
	// after asking it what the reference names (PullNewer).
	// layout without contacting the registry.
	UpToDate bool
	// Duplicates lists the platforms for which the index lists several
	// manifests: the first was pulled, as docker and containerd pull it.
	// Pull the digest of another to take it instead.
	Duplicates []layout.DuplicatePlatform
	// Referrers are the referrers copied with the image (WithReferrers):
	// pulled, or pushed.
	Referrers []layout.Referrer
}

func (r *Result) addDuplicate(d *layout.DuplicatePlatform) {
	if d != nil {
		r.Duplicates = append(r.Duplicates, *d)
	}
}

// Pull copies the image src (HOST/REPO[:TAG|@DIGEST], docker:// optional)
// into l and names it name; an empty name is the full reference
// (registry/repository:tag). The image is tagged only after every blob is
// in the layout and verified, so an interrupted pull leaves the layout's
// names as they were, and the next pull fetches only the blobs still
// missing. Without WithAllPlatforms only one platform's manifest is copied
// from a multi-platform image.
func Pull(ctx context.Context, l *layout.Layout, src, name string, opts ...Option) (*Result, error) {
	return pull(ctx, l, src, name, buildOptions(opts))
}

func pull(ctx context.Context, l *layout.Layout, src, name string, o *options) (*Result, error) {
	ref, err := ParseReference(src)
	if err != nil {
		return nil, err
	}
	ref = ref.WithDefaultTag()
	if name == "" {
		name = ref.String()
	}
	if err := layout.ValidateRef(name); err != nil {
		return nil, err
	}
	if _, isDigest := layout.IsDigestRef(name); isDigest {
		return nil, fmt.Errorf("%w %q: a pulled image is named by a tag or name, not a digest", layout.ErrInvalidRef, name)
	}
	if o.pullMode == PullMissing || o.pullMode == PullNever {
		if desc, ok := present(l, name, ref, o); ok {
			return &Result{Descriptor: bare(desc), Reference: ref, Name: name, UpToDate: true}, nil
		}
		if o.pullMode == PullNever {
			return nil, fmt.Errorf("%s:%s: %w (pull mode %q)", l.Dir(), name, ErrNotPresent, PullNever)
		}
	}
	if o.pullMode == PullNewer {
		o.unchanged = func(d ocispec.Descriptor) bool { return holds(l, name, ref, d) }
	}
	res, err := fetch(ctx, l, ref, o)
	if err != nil {
		return nil, err
	}
	if res.UpToDate && len(res.Referrers) == 0 {
		res.Name = name
		return res, nil
	}
	desc := bare(res.Descriptor)
	if name != ref.String() {
		// Keep the registry name beside a short local name, as containerd
		// does; push uses it to mount blobs from their first repository.
		desc.Annotations = map[string]string{layout.AnnotationImageName: ref.String()}
	}
	if err := l.Record(desc, []string{name}, res.Referrers); err != nil {
		return nil, err
	}
	res.Name = name
	return res, nil
}

// Fetch copies the image src into l like Pull, but names nothing: the
// caller tags Result.Descriptor (see layout.Tag) or lets gc collect it.
func Fetch(ctx context.Context, l *layout.Layout, src string, opts ...Option) (*Result, error) {
	ref, err := ParseReference(src)
	if err != nil {
		return nil, err
	}
	return fetch(ctx, l, ref.WithDefaultTag(), buildOptions(opts))
}

func fetch(ctx context.Context, l *layout.Layout, ref Reference, o *options) (*Result, error) {
	if err := l.Hold(); err != nil {
		return nil, err
	}
	// Leftovers of pulls that were killed: no live writer holds them.
	if _, err := l.Blobs().CleanStaging(); err != nil {
		return nil, err
	}
	prunePartials(l)
	sess, err := o.connect(ctx, ref.Host())
	if err != nil {
		return nil, err
	}
	repo, err := sess.repository(ref)
	if err != nil {
		return nil, err
	}
	root, err := resolveRoot(ctx, repo, ref)
	if err != nil {
		return nil, err
	}
	g := &graphPull{l: l, ref: ref, o: o, store: &layoutStore{l: l, o: o}, src: &resumableSource{repo: repo, sess: sess}}
	res := &Result{Descriptor: root, Reference: ref}
	res.Reference.Digest = root.Digest
	switch {
	case layout.IsIndex(root.MediaType) && !o.allPlatforms && len(o.platforms) > 1:
		if err := g.platforms(ctx, repo, res); err != nil {
			return nil, err
		}
		res.UpToDate = o.unchanged != nil && o.unchanged(res.Descriptor)
		if o.referrers {
			if res.Referrers, err = g.referrers(ctx, repo, res.Descriptor); err != nil {
				return nil, err
			}
		}
		return res, nil
	case layout.IsIndex(root.MediaType) && !o.allPlatforms:
		md, dup, err := selectRemote(ctx, repo, root, o.wantPlatform())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		res.addDuplicate(dup)
		res.Descriptor = bare(md)
		res.Reference.Digest = md.Digest
	case layout.IsManifest(root.MediaType) && len(o.platforms) > 0 && !o.indexOnly:
		if err := checkPlatform(ctx, repo, root, o.platforms); err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
	case !layout.IsIndex(root.MediaType) && !layout.IsManifest(root.MediaType):
		return nil, fmt.Errorf("%s: media type %q is not an image", ref, root.MediaType)
	}
	if o.unchanged != nil && o.unchanged(res.Descriptor) {
		res.UpToDate = true
	} else if err := g.copy(ctx, res.Descriptor); err != nil {
		return nil, err
	}
	if o.referrers {
		if res.Referrers, err = g.referrers(ctx, repo, res.Descriptor); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// resolveRoot asks the registry what ref names, refusing an answer that
// is not what a digest reference asked for or that declares more than the
// layout reads whole.
func resolveRoot(ctx context.Context, repo *remote.Repository, ref Reference) (ocispec.Descriptor, error) {
	root, err := repo.Resolve(ctx, ref.object())
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", ref, explain(err, ref.Domain))
	}
	if ref.Digest != "" && root.Digest != ref.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: registry answered with %s: %w", ref, root.Digest, ErrDigestConflict)
	}
	root = bare(root)
	if err := checkDeclared(root); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, err)
	}
	return root, nil
}

// graphPull copies images of one registry reference into a layout.
type graphPull struct {
	l     *layout.Layout
	ref   Reference
	o     *options
	store *layoutStore
	src   *resumableSource
}

// copy copies the graph below d and checks it is whole.
func (g *graphPull) copy(ctx context.Context, d ocispec.Descriptor) error {
	rec := func(b ocispec.Descriptor) { g.o.locations.record(g.ref.Host(), g.ref.Repository, b.Digest) }
	if err := oras.CopyGraph(ctx, g.src, g.store, d, g.o.graphOptions(rec)); err != nil {
		return fmt.Errorf("pull %s: %w", g.ref, explain(err, g.ref.Domain))
	}
	if err := missingBlob(g.l, d); err != nil {
		return fmt.Errorf("pull %s: %w", g.ref, err)
	}
	// The check every image from outside goes through; layers are
	// not decompressed here (unpack checks their diffIDs, and
	// fsck --diffids does on demand).
	if err := g.l.VerifyImage(ctx, d, layout.VerifyOptions{}); err != nil {
		return fmt.Errorf("pull %s: %w", g.ref, err)
	}
	return nil
}

// platforms copies the manifests of the platforms asked for out of the
// index res describes, then stores an index of just them, which res then
// describes.
func (g *graphPull) platforms(ctx context.Context, repo *remote.Repository, res *Result) error {
	root := res.Descriptor
	for _, p := range g.o.platforms {
		md, dup, err := selectRemote(ctx, repo, root, platforms.Normalize(p))
		if err != nil {
			return fmt.Errorf("%s: %w", g.ref, err)
		}
		res.addDuplicate(dup)
		if err := g.copy(ctx, md); err != nil {
			return err
		}
	}
	ib, err := fetchSmall(ctx, repo, root, layout.MaxManifestSize)
	if err != nil {
		return fmt.Errorf("fetch index %s of %s: %w", root.Digest, g.ref, err)
	}
	if _, err := g.l.PutBytes(root.MediaType, ib); err != nil {
		return err
	}
	d, err := g.l.SelectPlatforms(root, layout.CopyOptions{Platforms: g.o.platforms})
	if err != nil {
		return fmt.Errorf("%s: %w", g.ref, err)
	}
	res.Descriptor = d
	return nil
}

// wantPlatform is the one platform asked for, or the host's.
func (o *options) wantPlatform() ocispec.Platform {
	if len(o.platforms) > 0 {
		return platforms.Normalize(o.platforms[0])
	}
	return platforms.DefaultSpec()
}

// present says whether l holds the image name, complete, for the requested
// platform(s). A name that records the registry reference it was pulled
// from counts only for that reference.
func present(l *layout.Layout, name string, ref Reference, o *options) (ocispec.Descriptor, bool) {
	desc, err := l.Resolve(name)
	if err != nil {
		return ocispec.Descriptor{}, false
	}
	if from := desc.Annotations[layout.AnnotationImageName]; from != "" && from != ref.String() {
		return ocispec.Descriptor{}, false
	}
	if o.allPlatforms || !layout.IsIndex(desc.MediaType) {
		return desc, missingBlob(l, desc) == nil
	}
	want := o.platforms
	if len(want) == 0 {
		want = []ocispec.Platform{platforms.DefaultSpec()}
	}
	for _, p := range want {
		md, err := l.SelectManifest(desc, &p)
		if err != nil || missingBlob(l, md) != nil {
			return ocispec.Descriptor{}, false
		}
	}
	return desc, true
}

// holds says whether name in l is the image d, complete, and was got from
// ref (a name recording another source does not count).
func holds(l *layout.Layout, name string, ref Reference, d ocispec.Descriptor) bool {
	desc, err := l.Resolve(name)
	if err != nil || desc.Digest != d.Digest {
		return false
	}
	if from := desc.Annotations[layout.AnnotationImageName]; from != "" && from != ref.String() {
		return false
	}
	return missingBlob(l, desc) == nil
}

// missingBlob names the first blob reachable from d that l lacks.
func missingBlob(l *layout.Layout, d ocispec.Descriptor) error {
	return l.Walk(d, func(c ocispec.Descriptor, _ []byte) error {
		if !l.Blobs().Has(c.Digest, c.Size) {
			return fmt.Errorf("%s %s (%d bytes) is missing from %s", kind(c), c.Digest, c.Size, l.Dir())
		}
		return nil
	})
}

// selectRemote picks the manifest for want from a registry index, as
// layout.PickManifest does (the first of several for one platform, which
// it reports).
func selectRemote(ctx context.Context, repo *remote.Repository, idxDesc ocispec.Descriptor, want ocispec.Platform) (ocispec.Descriptor, *layout.DuplicatePlatform, error) {
	ms, err := remoteManifests(ctx, repo, idxDesc, 0)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	return layout.PickManifest(idxDesc.Digest, want, ms)
}

// remoteManifests lists the manifests of a registry index that name their
// platform, and those of the indexes it nests, in order.
func remoteManifests(ctx context.Context, repo *remote.Repository, idxDesc ocispec.Descriptor, depth int) ([]ocispec.Descriptor, error) {
	if depth > 8 {
		return nil, fmt.Errorf("index %s: indexes nested too deeply", idxDesc.Digest)
	}
	b, err := fetchSmall(ctx, repo, idxDesc, layout.MaxManifestSize)
	if err != nil {
		return nil, fmt.Errorf("fetch index %s: %w", idxDesc.Digest, err)
	}
	idx, err := layout.ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("index %s: %w", idxDesc.Digest, err)
	}
	var out []ocispec.Descriptor
	for _, c := range idx.Manifests {
		switch {
		case layout.IsIndex(c.MediaType):
			if sub, err := remoteManifests(ctx, repo, c, depth+1); err == nil {
				out = append(out, sub...)
			}
		case layout.IsManifest(c.MediaType) && c.Platform != nil:
			out = append(out, c)
		}
	}
	return out, nil
}

// checkPlatform refuses a single-platform image whose config says another
// platform than the one the caller asked for.
func checkPlatform(ctx context.Context, repo *remote.Repository, md ocispec.Descriptor, want []ocispec.Platform) error {
	mb, err := fetchSmall(ctx, repo, md, layout.MaxManifestSize)
	if err != nil {
		return fmt.Errorf("fetch manifest %s: %w", md.Digest, err)
	}
	m, err := layout.ParseManifest(mb)
	if err != nil {
		return fmt.Errorf("manifest %s: %w", md.Digest, err)
	}
	cb, err := fetchSmall(ctx, repo, m.Config, layout.MaxConfigSize)
	if err != nil {
		return fmt.Errorf("fetch config %s: %w", m.Config.Digest, err)
	}
	c, err := layout.ParseImageConfig(cb)
	if err != nil {
		return fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	got := platforms.Normalize(ocispec.Platform{OS: c.OS, Architecture: c.Architecture, Variant: c.Variant})
	for _, p := range want {
		if platforms.Only(platforms.Normalize(p)).Match(got) {
			return nil
		}
	}
	return fmt.Errorf("manifest %s is for %s: %w %s", md.Digest, platforms.Format(got), layout.ErrNoPlatform, platforms.Format(want[0]))
}

// graphOptions turns oras-go's copy hooks into progress events, and
// tells rec (when set) of every blob, not index or manifest, that the
// receiving side holds once it is done.
func (o *options) graphOptions(rec func(ocispec.Descriptor)) oras.CopyGraphOptions {
	ev := func(s State) func(context.Context, ocispec.Descriptor) error {
		return func(_ context.Context, d ocispec.Descriptor) error {
			p := Progress{Descriptor: d, State: s}
			if o.isFound(d) && (s == StateDone || s == StateMounted) {
				p.State = StateExists
			}
			if s == StateDone || s == StateExists || s == StateMounted {
				p.Bytes = d.Size
				if rec != nil && !layout.IsIndex(d.MediaType) && !layout.IsManifest(d.MediaType) {
					rec(d)
				}
			}
			o.report(p)
			return nil
		}
	}
	return oras.CopyGraphOptions{
		// oras-go reads manifests and indexes whole (to find what they
		// reference) and refuses larger ones; the layout's limit.
		MaxMetadataBytes: layout.MaxManifestSize,
		Concurrency:      o.concurrency,
		PreCopy:          ev(StateCopying),
		PostCopy:         ev(StateDone),
		OnCopySkipped:    ev(StateExists),
		OnMounted:        ev(StateMounted),
	}
}
