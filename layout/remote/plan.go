package remote

import (
	"context"
	"fmt"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry/remote"
)

// Plan is what a transfer would move, found without moving it: a dry run.
type Plan struct {
	// Descriptor is the image as the receiving side would hold it: the
	// source's manifest or index, or the one platform's manifest.
	Descriptor ocispec.Descriptor
	// UpToDate says the receiving side holds that image under the name
	// already: nothing would move.
	UpToDate bool
	// Missing are the blobs the receiving side lacks, each once.
	Missing []ocispec.Descriptor
}

// Bytes is the size of what would move.
func (p *Plan) Bytes() int64 {
	var n int64
	for _, d := range p.Missing {
		n += d.Size
	}
	return n
}

// PlanPull says what Pull of src into l under name would download, with
// the same options, reading only manifests and indexes (from l when it
// has them). Several platforms are planned as their manifests; the index
// Pull would write for them is not counted.
func (c *Client) PlanPull(ctx context.Context, l *layout.Layout, src, name string, opts ...Option) (*Plan, error) {
	o := c.options(opts)
	ref, err := ParseReference(src)
	if err != nil {
		return nil, err
	}
	ref = ref.WithDefaultTag()
	if name == "" {
		name = ref.String()
	}
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
	targets := []ocispec.Descriptor{root}
	if layout.IsIndex(root.MediaType) && !o.allPlatforms {
		want := o.platforms
		if len(want) == 0 {
			want = []ocispec.Platform{o.wantPlatform()}
		}
		targets = nil
		for _, p := range want {
			md, _, err := selectRemote(ctx, repo, root, platforms.Normalize(p))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref, err)
			}
			targets = append(targets, bare(md))
		}
	}
	plan := &Plan{Descriptor: targets[0]}
	if len(targets) > 1 {
		plan.Descriptor = root
	}
	if len(targets) == 1 && name != "" && holds(l, name, ref, targets[0]) {
		plan.UpToDate = true
		return plan, nil
	}
	seen := map[digest.Digest]bool{}
	for _, t := range targets {
		if err := planRemote(ctx, repo, l, t, seen, plan, 0); err != nil {
			return nil, fmt.Errorf("plan %s: %w", ref, explain(err, ref.Domain))
		}
	}
	return plan, nil
}

// planRemote adds to plan every blob below d that l lacks.
func planRemote(ctx context.Context, repo *remote.Repository, l *layout.Layout, d ocispec.Descriptor, seen map[digest.Digest]bool, plan *Plan, depth int) error {
	if seen[d.Digest] {
		return nil
	}
	seen[d.Digest] = true
	if depth > 16 {
		return fmt.Errorf("%s: descriptors nested too deeply", d.Digest)
	}
	if err := checkDeclared(d); err != nil {
		return err
	}
	has := l.Blobs().Has(d.Digest, d.Size)
	if !has {
		plan.Missing = append(plan.Missing, d)
	}
	if !layout.IsIndex(d.MediaType) && !layout.IsManifest(d.MediaType) {
		return nil
	}
	var b []byte
	var err error
	if has {
		b, err = l.ReadBlob(d, layout.MaxManifestSize)
	} else {
		b, err = fetchSmall(ctx, repo, d, layout.MaxManifestSize)
	}
	if err != nil {
		return fmt.Errorf("fetch %s %s: %w", kind(d), d.Digest, err)
	}
	var children []ocispec.Descriptor
	if layout.IsIndex(d.MediaType) {
		idx, err := layout.ParseIndex(b)
		if err != nil {
			return fmt.Errorf("index %s: %w", d.Digest, err)
		}
		children = idx.Manifests
	} else {
		m, err := layout.ParseManifest(b)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		children = append([]ocispec.Descriptor{m.Config}, m.Layers...)
	}
	for _, c := range children {
		if len(c.URLs) > 0 && c.MediaType == layout.MediaTypeDockerForeignLayer {
			continue
		}
		if err := planRemote(ctx, repo, l, c, seen, plan, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// PlanPush says what Push of srcRef of l to dst would upload, with the
// same options, asking the registry which blobs it has (a HEAD request
// each) unless dst names the image already.
func (c *Client) PlanPush(ctx context.Context, l *layout.Layout, srcRef, dst string, opts ...Option) (*Plan, error) {
	o := c.options(opts)
	ref, err := ParseReference(dst)
	if err != nil {
		return nil, err
	}
	if !o.byDigest {
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
	sess, err := o.connect(ctx, ref.Host())
	if err != nil {
		return nil, err
	}
	repo, err := sess.repository(ref)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Descriptor: desc}
	if ref.Tag != "" {
		if cur, err := repo.Resolve(ctx, ref.Tag); err == nil && cur.Digest == desc.Digest {
			plan.UpToDate = true
			return plan, nil
		}
	}
	seen := map[digest.Digest]bool{}
	err = l.Walk(desc, func(d ocispec.Descriptor, _ []byte) error {
		if seen[d.Digest] {
			return nil
		}
		seen[d.Digest] = true
		ok, err := repo.Exists(ctx, d)
		if err != nil {
			return explain(err, ref.Domain)
		}
		if !ok {
			plan.Missing = append(plan.Missing, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("plan push to %s: %w", ref, err)
	}
	return plan, nil
}

// Present says whether the repository of ref names the image d with
// ref's tag already (one HEAD request): a push would change nothing.
func (c *Client) Present(ctx context.Context, d ocispec.Descriptor, ref string) bool {
	r, err := ParseReference(ref)
	if err != nil || r.Tag == "" {
		return false
	}
	cur, err := c.Resolve(ctx, r.String())
	return err == nil && cur.Digest == d.Digest
}
