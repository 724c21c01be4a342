package mirror

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/layout/transport"
)

// intoArchive gathers every image in a staging layout next to the archive,
// then writes the archive whole (under a temporary name, renamed into
// place): an archive cannot be updated in place.
func (s *syncer) intoArchive(ctx context.Context, srcs []Source, d destination) error {
	if d.format == archive.Docker && len(s.o.Platforms) == 0 {
		// A docker-archive holds one platform per image.
		s.o.Platforms = []ocispec.Platform{platforms.DefaultSpec()}
	}
	l, remove, err := stagingLayout(filepath.Dir(d.path))
	if err != nil {
		return err
	}
	defer remove()
	if err := s.intoLayout(ctx, l, srcs); err != nil {
		return err
	}
	if s.o.DryRun {
		return nil
	}
	src, err := transport.ParseSource("oci:" + l.Dir())
	if err != nil {
		return err
	}
	dst, err := transport.ParseDestination(string(d.format) + ":" + d.path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSource, err)
	}
	_, err = transport.Copy(ctx, src, dst, transport.CopyOptions{Options: transport.Options{
		All: true, Copy: layout.CopyOptions{AllPlatforms: true}, Referrers: s.o.Referrers,
	}})
	return err
}

// push is one image to push.
type push struct {
	l      *layout.Layout
	source string
	desc   ocispec.Descriptor
	dst    string // REGISTRY/PREFIX/REPO:TAG or @DIGEST
}

// intoRegistry pushes every named image of the sources under
// REGISTRY/PREFIX. Layouts are pushed from where they are; archives and
// registry images are staged in a layout first.
func (s *syncer) intoRegistry(ctx context.Context, srcs []Source, d destination) error {
	var (
		pushes []push
		staged []Source
	)
	for i := range srcs {
		if kindOf(srcs[i].Ref) != fromLayout {
			staged = append(staged, srcs[i])
			continue
		}
		ref := srcs[i].Ref
		if !strings.HasPrefix(ref, "oci:") {
			ref = "oci:" + ref
		}
		ts, err := transport.ParseSource(ref)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSource, err)
		}
		ls, ok := ts.(transport.LocalSource)
		if !ok {
			return fmt.Errorf("%w: %s", ErrInvalidSource, srcs[i].Ref)
		}
		l, imgs, err := ls.Local(transport.Options{All: true})
		if err != nil {
			return err
		}
		defer l.Close()
		ps, err := s.pushesOf(l, ts.String(), imgs, d)
		if err != nil {
			return err
		}
		pushes = append(pushes, ps...)
	}
	if len(staged) > 0 {
		l, remove, err := stagingLayout(s.o.StagingDir)
		if err != nil {
			return err
		}
		defer remove()
		// Staging is no part of what the sync reports.
		inner := &syncer{o: s.o, clients: s.clients, base: s.base, onBlob: s.onBlob}
		inner.o.DryRun, inner.o.OnImage = false, nil
		if err := inner.intoLayout(ctx, l, staged); err != nil {
			return err
		}
		ts, err := transport.ParseSource("oci:" + l.Dir())
		if err != nil {
			return err
		}
		_, imgs, err := ts.(transport.LocalSource).Local(transport.Options{All: true})
		if err != nil {
			return err
		}
		ps, err := s.pushesOf(l, "", imgs, d)
		if err != nil {
			return err
		}
		pushes = append(pushes, ps...)
	}
	// One name, one image.
	byDst := map[string]push{}
	for _, p := range pushes {
		if o, ok := byDst[p.dst]; ok && o.desc.Digest != p.desc.Digest {
			return fmt.Errorf("%w: %s would be %s (%s) and %s (%s)", ErrNameClash, p.dst, o.desc.Digest, o.source, p.desc.Digest, p.source)
		}
		byDst[p.dst] = p
	}
	sort.SliceStable(pushes, func(i, j int) bool { return pushes[i].dst < pushes[j].dst })
	return each(ctx, s.o.Jobs, pushes, s.pushOne)
}

// pushesOf maps the named images of l to their registry names.
func (s *syncer) pushesOf(l *layout.Layout, source string, imgs []transport.Image, d destination) ([]push, error) {
	var out []push
	for _, img := range imgs {
		names := img.Names
		if len(names) == 0 && strings.Contains(img.FullName, "@") {
			// Kept by digest (a list's sha256:...): pushed by digest.
			names = []string{img.FullName}
		}
		for _, n := range names {
			dst, err := destName(n, l.Dir(), d, s.o.Scoped)
			if err != nil {
				return nil, err
			}
			src := source
			if src == "" {
				src = n
			} else {
				src += ":" + n
			}
			out = append(out, push{l: l, source: src, desc: img.Descriptor, dst: dst})
		}
	}
	return out, nil
}

// destName is where an image named name goes under a registry
// destination, as skopeo sync names it: REGISTRY/PREFIX/ and the last
// part of its repository (busybox of docker.io/library/busybox:1), or,
// scoped, its whole name (REGISTRY/PREFIX/docker.io/library/busybox:1).
// A bare tag (v1) is a tag of a repository named after its layout's
// directory, as skopeo's dir: sources are.
func destName(name, dir string, d destination, scoped bool) (string, error) {
	var repo, tail string
	if layout.IsBareTag(name) {
		repo, tail = sanitizeRepo(dir), ":"+name
	} else {
		r, err := remote.ParseReference(name)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", name, err)
		}
		repo = r.Repository
		if i := strings.LastIndexByte(repo, '/'); i >= 0 && !scoped {
			repo = repo[i+1:]
		}
		if scoped {
			// A port is no part of a repository name: host:5000 is host_5000.
			repo = strings.ReplaceAll(r.Domain, ":", "_") + "/" + r.Repository
		}
		r = r.WithDefaultTag()
		if r.Tag != "" {
			tail = ":" + r.Tag
		} else {
			tail = "@" + r.Digest.String()
		}
	}
	out := d.registry + "/"
	if d.prefix != "" {
		out += d.prefix + "/"
	}
	out += repo + tail
	if _, err := remote.ParseReference(out); err != nil {
		return "", fmt.Errorf("image %s: destination %s: %w", name, out, err)
	}
	return out, nil
}

// pushOne pushes one image, or finds its tag naming it already.
func (s *syncer) pushOne(ctx context.Context, p push) error {
	c := s.base
	cnt := &counter{next: s.o.Progress}
	var opts []remote.Option
	for _, pl := range s.o.Platforms {
		opts = append(opts, remote.WithPlatform(pl))
	}
	if s.o.Referrers {
		opts = append(opts, remote.WithReferrers())
	}
	want := p.desc
	if len(s.o.Platforms) > 0 && layout.IsIndex(want.MediaType) {
		sel, err := p.l.SelectPlatforms(want, layout.CopyOptions{Platforms: s.o.Platforms})
		if err != nil {
			return fmt.Errorf("%s: %w", p.source, err)
		}
		want = sel
	}
	r := Result{Source: p.source, Name: p.dst, Digest: want.Digest, Status: Copied}
	src := "@" + p.desc.Digest.String()
	if s.o.DryRun {
		plan, err := c.PlanPush(ctx, p.l, src, p.dst, opts...)
		if err != nil {
			return err
		}
		r.Status = Planned
		r.Blobs, r.Bytes = s.countPlan(plan.Missing)
		if plan.UpToDate {
			r.Status = Unchanged
		}
		s.add(r)
		return nil
	}
	if c.Present(ctx, want, p.dst) {
		r.Status = Unchanged
		s.add(r)
		return nil
	}
	opts = append(opts, remote.WithProgress(cnt.progress))
	if _, err := c.Push(ctx, p.l, src, p.dst, opts...); err != nil {
		return err
	}
	r.Blobs, r.Bytes = cnt.blobs, cnt.bytes
	s.add(r)
	return nil
}
