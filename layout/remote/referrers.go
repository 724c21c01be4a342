package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// WithReferrers makes Pull, Fetch and Push carry referrers (signatures,
// SBOMs, attestations) with the image: those of every manifest and index
// copied, and theirs in turn.
//
// A pull asks the registry's referrers API, or where the registry has
// none reads the fallback tag sha256-<hex> (oras-go decides), and looks
// for cosign's sha256-<hex>.sig, .att and .sbom tags; every referrer is
// downloaded and verified like the image, and Result.Referrers lists
// them. Pull records them with the image's name in one update of
// index.json (layout.Record); Fetch leaves that to its caller.
//
// A push finds them in the layout (layout.ReferrerIndex) unless
// WithReferrerList names them, and pushes each after the image: a
// manifest with a subject through oras-go, which updates the fallback
// tag where the registry has no referrers API, and cosign's artifacts
// under their tags. Digests stay as they are, so signatures verify on
// the far side.
//
// A pull that finds the image in the layout without asking the registry
// (PullMissing, PullNever) asks for no referrers either.
func WithReferrers() Option { return func(o *options) { o.referrers = true } }

// WithReferrerList makes Push push refs (whose blobs are in the layout)
// after the image, instead of finding the image's referrers in the
// layout's index.json: for a layout whose index.json does not list them
// (a copy's staging layout). It implies WithReferrers.
func WithReferrerList(refs []layout.Referrer) Option {
	return func(o *options) {
		o.referrers = true
		o.referrerList = append(o.referrerList, refs...)
		o.haveReferrerList = true
	}
}

// manifestsIn lists the manifests and indexes of root's graph in l, root
// first.
func manifestsIn(l *layout.Layout, root ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	err := l.Walk(root, func(d ocispec.Descriptor, b []byte) error {
		if b != nil && !seen[d.Digest] {
			seen[d.Digest] = true
			out = append(out, bare(d))
		}
		return nil
	})
	return out, err
}

// referrers pulls the referrers of root's graph (already in the layout)
// and theirs in turn, a level at a time: the registry is asked about
// every subject of a level at once (o.concurrency requests), then what
// it names is pulled.
func (g *graphPull) referrers(ctx context.Context, repo *remote.Repository, root ocispec.Descriptor) ([]layout.Referrer, error) {
	level, err := manifestsIn(g.l, root)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", g.ref, err)
	}
	done := map[digest.Digest]bool{}
	seen := map[string]bool{}
	var out []layout.Referrer
	for len(level) > 0 {
		var subjects []ocispec.Descriptor
		for _, s := range level {
			if !done[s.Digest] {
				done[s.Digest] = true
				subjects = append(subjects, s)
			}
		}
		found, err := g.referrersOfAll(ctx, repo, subjects)
		if err != nil {
			return nil, err
		}
		level = nil
		for _, r := range found {
			key := r.Descriptor.Digest.String() + " " + r.Tag
			if seen[key] {
				continue
			}
			seen[key] = true
			d := r.Descriptor
			if !layout.IsManifest(d.MediaType) && !layout.IsIndex(d.MediaType) {
				// Referrers are manifests or indexes; anything else
				// is no referrer strata can keep.
				g.o.warnf("%s: referrer %s of %s has media type %q: left behind", g.ref, d.Digest, r.Subject, d.MediaType)
				continue
			}
			if err := checkDeclared(d); err != nil {
				return nil, fmt.Errorf("pull referrer of %s: %w", r.Subject, err)
			}
			if err := g.copy(ctx, d); err != nil {
				return nil, fmt.Errorf("referrer %s of %s: %w", d.Digest, r.Subject, err)
			}
			out = append(out, r)
			sub, err := manifestsIn(g.l, d)
			if err != nil {
				return nil, fmt.Errorf("referrer %s of %s: %w", d.Digest, r.Subject, err)
			}
			level = append(level, sub...)
		}
	}
	return out, nil
}

// referrersOfAll asks about every subject at once, at most o.concurrency
// at a time, and returns what it found in the subjects' order.
func (g *graphPull) referrersOfAll(ctx context.Context, repo *remote.Repository, subjects []ocispec.Descriptor) ([]layout.Referrer, error) {
	found := make([][]layout.Referrer, len(subjects))
	errs := make([]error, len(subjects))
	sem := make(chan struct{}, max(1, g.o.concurrency))
	var wg sync.WaitGroup
	for i, s := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			found[i], errs[i] = g.referrersOf(ctx, repo, s)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []layout.Referrer
	for _, f := range found {
		out = append(out, f...)
	}
	return out, nil
}

// referrersOf asks the registry for the direct referrers of s: by the
// referrers API or its fallback tag, and by cosign's tags.
func (g *graphPull) referrersOf(ctx context.Context, repo *remote.Repository, s ocispec.Descriptor) ([]layout.Referrer, error) {
	var out []layout.Referrer
	err := repo.Referrers(ctx, s, "", func(rs []ocispec.Descriptor) error {
		for _, r := range rs {
			out = append(out, layout.Referrer{Descriptor: r, Subject: s.Digest})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s in %s: %w", s.Digest, g.ref.Name(), explain(err, g.ref.Domain))
	}
	for _, suffix := range layout.CosignSuffixes {
		tag := layout.CosignTag(s.Digest, suffix)
		d, err := repo.Resolve(ctx, tag)
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("resolve %s:%s: %w", g.ref.Name(), tag, explain(err, g.ref.Domain))
		}
		out = append(out, layout.Referrer{Descriptor: bare(d), Subject: s.Digest, Tag: tag})
	}
	return out, nil
}

// referrersToPush lists what Push sends after the image desc: the
// caller's list, or the referrers of desc's graph in l.
func referrersToPush(ctx context.Context, l *layout.Layout, desc ocispec.Descriptor, o *options) ([]layout.Referrer, error) {
	if o.haveReferrerList {
		return o.referrerList, nil
	}
	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		return nil, err
	}
	return ri.Closure(ctx, desc)
}

// pushReferrers pushes refs to repo, each whole: a referrer with a subject
// by digest (oras-go records it under the subject's fallback tag where
// the registry has no referrers API), one of cosign's under its tag.
func pushReferrers(ctx context.Context, l *layout.Layout, repo *remote.Repository, ref Reference, src *layoutStore, refs []layout.Referrer, gopts oras.CopyGraphOptions) error {
	for _, r := range refs {
		d := bare(r.Descriptor)
		if err := missingBlob(l, d); err != nil {
			return fmt.Errorf("push referrer %s of %s: %w", d.Digest, r.Subject, err)
		}
		if r.Tag == "" {
			if err := oras.CopyGraph(ctx, src, repo, d, gopts); err != nil {
				return fmt.Errorf("push referrer %s of %s to %s: %w", d.Digest, r.Subject, ref.Name(), explain(err, ref.Domain))
			}
			continue
		}
		copts := oras.CopyOptions{CopyGraphOptions: gopts}
		if _, err := oras.Copy(ctx, &rootedSource{layoutStore: src, root: d}, "", repo, r.Tag, copts); err != nil {
			return fmt.Errorf("push %s:%s: %w", ref.Name(), r.Tag, explain(err, ref.Domain))
		}
	}
	return nil
}
