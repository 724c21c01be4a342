package remote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote"
)

// Push copies the image srcRef of l (a name, a digest, or empty for the
// layout's only image) to dst (HOST/REPO[:TAG|@DIGEST], docker://
// optional; no tag means "latest" unless WithByDigest). Blobs the registry
// has are not uploaded; blobs it has in another repository are mounted
// from there when the registry allows it. The manifest goes last, so the
// tag moves only once the whole image is in the registry. With
// WithPlatform, only that platform's manifest of a multi-platform image is
// pushed. With WithReferrers its referrers follow it.
func Push(ctx context.Context, l *layout.Layout, srcRef, dst string, opts ...Option) (*Result, error) {
	return push(ctx, l, srcRef, dst, buildOptions(opts))
}

func push(ctx context.Context, l *layout.Layout, srcRef, dst string, o *options) (*Result, error) {
	ref, err := ParseReference(dst)
	if err != nil {
		return nil, err
	}
	if o.byDigest {
		if ref.Tag != "" {
			return nil, fmt.Errorf("%w %q: a push by digest takes no tag", ErrInvalidReference, dst)
		}
	} else {
		ref = ref.WithDefaultTag()
	}
	entry, err := l.Resolve(srcRef)
	if err != nil {
		return nil, err
	}
	desc := bare(entry)
	if len(o.platforms) > 0 && layout.IsIndex(desc.MediaType) {
		if desc, err = l.SelectPlatforms(desc, layout.CopyOptions{Platforms: o.platforms}); err != nil {
			return nil, fmt.Errorf("%s:%s: %w", l.Dir(), srcRef, err)
		}
		desc = bare(desc)
	}
	if !layout.IsIndex(desc.MediaType) && !layout.IsManifest(desc.MediaType) {
		return nil, fmt.Errorf("%s:%s: media type %q is not an image", l.Dir(), srcRef, desc.MediaType)
	}
	if err := missingBlob(l, desc); err != nil {
		if layout.IsIndex(desc.MediaType) {
			return nil, fmt.Errorf("push %s:%s: %w (%w)", l.Dir(), srcRef, err, ErrPartialIndex)
		}
		return nil, fmt.Errorf("push %s:%s: %w", l.Dir(), srcRef, err)
	}
	if ref.Digest != "" && ref.Digest != desc.Digest {
		return nil, fmt.Errorf("push to %s: the image is %s: %w", ref, desc.Digest, ErrDigestConflict)
	}

	sess, err := o.connect(ctx, ref.Host())
	if err != nil {
		return nil, err
	}
	repo, err := sess.repository(ref)
	if err != nil {
		return nil, err
	}
	src := &layoutStore{l: l, o: o}
	mounts := mountCandidates(l, entry.Digest, ref, o.mountFrom)
	err = pushGraph(ctx, src, repo, desc, ref, mounts, o, o.locations)
	if err != nil && o.locations != nil && isMountError(err) {
		// A repository the cache named may be gone, or closed to us:
		// the cache is a hint, so push again without it.
		err = pushGraph(ctx, src, repo, desc, ref, mounts, o, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", ref, explain(err, ref.Domain))
	}
	res := &Result{Descriptor: desc, Reference: ref}
	if o.referrers {
		refs, err := referrersToPush(ctx, l, desc, o)
		if err != nil {
			return nil, fmt.Errorf("push %s: referrers: %w", ref, err)
		}
		if err := pushReferrers(ctx, l, repo, ref, src, refs, o.pushGraphOptions(ref, mounts, o.locations)); err != nil {
			return nil, err
		}
		res.Referrers = refs
	}
	res.Reference.Digest = desc.Digest
	return res, nil
}

// pushGraph copies the image desc of src to repo: tagged as ref.Tag when
// it has one, else by digest. Blobs are mounted from mounts and, with
// cache, from the repositories it knows hold them; every blob repo holds
// once done is recorded in the location cache.
func pushGraph(ctx context.Context, src *layoutStore, repo *remote.Repository, desc ocispec.Descriptor, ref Reference, mounts []string, o *options, cache *LocationCache) error {
	gopts := o.pushGraphOptions(ref, mounts, cache)
	dst := o.target(repo, ref)
	if ref.Tag != "" {
		copts := oras.CopyOptions{CopyGraphOptions: gopts}
		_, err := oras.Copy(ctx, &rootedSource{layoutStore: src, root: desc}, "", dst, ref.Tag, copts)
		return err
	}
	return oras.CopyGraph(ctx, src, dst, desc, gopts)
}

// pushGraphOptions are the copy options of a push to ref: progress,
// location records, and mounts from mounts and what cache knows.
func (o *options) pushGraphOptions(ref Reference, mounts []string, cache *LocationCache) oras.CopyGraphOptions {
	host := ref.Host()
	gopts := o.graphOptions(func(b ocispec.Descriptor) { o.locations.record(host, ref.Repository, b.Digest) })
	if len(mounts) > 0 || cache != nil {
		gopts.MountFrom = func(_ context.Context, d ocispec.Descriptor) ([]string, error) {
			out := append([]string(nil), mounts...)
			for _, r := range cache.candidates(host, d.Digest, ref.Repository) {
				if len(out) >= len(mounts)+maxMountTries {
					break
				}
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
			return out, nil
		}
	}
	return gopts
}

// isMountError says whether a push failed asking the registry to mount a
// blob.
func isMountError(err error) bool {
	var ce *oras.CopyError
	return errors.As(err, &ce) && ce.Op == "Mount"
}

// bare drops the layout-only fields of an index.json entry.
func bare(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
}

// rootedSource is a layout store whose only reference is the image being
// pushed.
type rootedSource struct {
	*layoutStore
	root ocispec.Descriptor
}

func (r *rootedSource) Resolve(context.Context, string) (ocispec.Descriptor, error) {
	return r.root, nil
}

// mountCandidates lists the repositories on dst's registry that may hold
// the blobs already: the caller's, and those of the registry names the
// image has in the layout (a pulled image remembers where it came from).
func mountCandidates(l *layout.Layout, d digest.Digest, dst Reference, extra []string) []string {
	seen := map[string]bool{dst.Repository: true}
	var out []string
	add := func(repo string) {
		if repo != "" && !seen[repo] {
			seen[repo] = true
			out = append(out, repo)
		}
	}
	for _, e := range extra {
		add(strings.TrimPrefix(strings.TrimPrefix(e, TransportPrefix), dst.Domain+"/"))
	}
	idx, err := l.Index()
	if err != nil {
		return out
	}
	for _, m := range idx.Manifests {
		if m.Digest != d {
			continue
		}
		for _, key := range []string{layout.AnnotationRefName, layout.AnnotationImageName} {
			name := m.Annotations[key]
			if !strings.Contains(name, "/") {
				continue // a short local name says nothing about a registry
			}
			if r, err := ParseReference(name); err == nil && r.Domain == dst.Domain {
				add(r.Repository)
			}
		}
	}
	return out
}
