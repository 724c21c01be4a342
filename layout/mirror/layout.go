package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/layout/transport"
)

// intoLayoutDir syncs into the layout at dir, made if needed (a dry run
// plans against an empty one when there is none).
func (s *syncer) intoLayoutDir(ctx context.Context, srcs []Source, dir string) error {
	var (
		l   *layout.Layout
		err error
	)
	if s.o.DryRun {
		l, err = layout.Open(dir)
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, layout.ErrNotLayout) {
			var remove func()
			l, remove, err = stagingLayout(s.o.StagingDir)
			if err != nil {
				return err
			}
			defer remove()
		}
	} else {
		l, err = layout.Init(dir)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	err = s.intoLayout(ctx, l, srcs)
	if err != nil && l.Created() && !holdsFiles(filepath.Join(l.Dir(), layout.BlobsDir), remote.PartialDir(l)) {
		// Nothing came: leave no layout the user did not have (what did
		// come stays, for the next run to resume from).
		_, _ = l.Undo()
	}
	return err
}

// holdsFiles says whether any of dirs holds a regular file.
func holdsFiles(dirs ...string) bool {
	found := false
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
	}
	return found
}

// intoLayout copies every source's images into l: layouts and archives
// one after the other, registry images Jobs at a time.
func (s *syncer) intoLayout(ctx context.Context, l *layout.Layout, srcs []Source) error {
	items, err := s.expand(ctx, srcs)
	if err != nil {
		return err
	}
	for i := range srcs {
		if kindOf(srcs[i].Ref) == fromRegistry {
			continue
		}
		if err := s.localInto(ctx, l, &srcs[i]); err != nil {
			return err
		}
	}
	return each(ctx, s.o.Jobs, items, func(ctx context.Context, it regItem) error {
		return s.pullInto(ctx, l, it)
	})
}

// platformOptions turns a platform selection into pull and push options:
// none keeps an index whole.
func platformOptions(ps []ocispec.Platform) []remote.Option {
	if len(ps) == 0 {
		return []remote.Option{remote.WithAllPlatforms()}
	}
	out := []remote.Option{remote.WithPlatformsOfIndexes()}
	for _, p := range ps {
		out = append(out, remote.WithPlatform(p))
	}
	return out
}

// pullInto copies one registry image into l under its full name, or
// finds it there already at the cost of one request.
func (s *syncer) pullInto(ctx context.Context, l *layout.Layout, it regItem) error {
	c := s.client(it.src)
	cnt := &counter{next: s.o.Progress}
	opts := append(platformOptions(s.platformsOf(it.src)), remote.WithProgress(cnt.progress), remote.WithPullMode(remote.PullNewer))
	if s.o.Referrers {
		opts = append(opts, remote.WithReferrers())
	}
	name := it.name()
	r := Result{Source: remote.TransportPrefix + it.ref.String(), Name: name}
	if s.o.DryRun {
		plan, err := c.PlanPull(ctx, l, it.ref.String(), name, opts...)
		if err != nil {
			return err
		}
		r.Digest, r.Status = plan.Descriptor.Digest, Planned
		r.Blobs, r.Bytes = s.countPlan(plan.Missing)
		if plan.UpToDate || len(plan.Missing) == 0 && name == "" {
			r.Status = Unchanged
		}
		s.add(r)
		return nil
	}
	if name == "" {
		// A digest: the image is kept unnamed, with its reference beside.
		res, err := c.Fetch(ctx, l, it.ref.String(), opts...)
		if err != nil {
			return err
		}
		d := res.Descriptor
		d.Annotations = map[string]string{layout.AnnotationImageName: it.ref.String()}
		if err := l.AddUntagged(d); err != nil {
			return err
		}
		r.Digest, r.Status, r.Blobs, r.Bytes = d.Digest, Copied, cnt.blobs, cnt.bytes
		if cnt.blobs == 0 {
			r.Status = Unchanged
		}
		s.add(r)
		return nil
	}
	res, err := c.Pull(ctx, l, it.ref.String(), name, opts...)
	if err != nil {
		return err
	}
	r.Digest, r.Status, r.Blobs, r.Bytes = res.Descriptor.Digest, Copied, cnt.blobs, cnt.bytes
	if res.UpToDate {
		r.Status = Unchanged
	}
	s.add(r)
	return nil
}

// localInto copies the images of a layout or archive source into l with
// their names (every image, unless a layout source names one).
func (s *syncer) localInto(ctx context.Context, l *layout.Layout, src *Source) error {
	ref := src.Ref
	if kindOf(ref) == fromLayout && !strings.HasPrefix(ref, "oci:") {
		ref = "oci:" + ref
	}
	ts, err := transport.ParseSource(ref)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSource, err)
	}
	names, err := nameMap(l)
	if err != nil {
		return err
	}
	copyOpts := layout.CopyOptions{Platforms: s.platformsOf(src), AllPlatforms: len(s.platformsOf(src)) == 0}
	if s.o.DryRun {
		return s.planLocal(ctx, l, ts, src, names, copyOpts)
	}
	var (
		mu    sync.Mutex
		added = map[digest.Digest]int64{}
	)
	copyOpts.OnBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
		if how != blob.CopyExisted {
			mu.Lock()
			added[d.Digest] = d.Size
			mu.Unlock()
		}
		s.onBlob(d, how)
	}
	dst, err := transport.ParseDestination("oci:" + l.Dir())
	if err != nil {
		return err
	}
	imgs, err := transport.Copy(ctx, ts, dst, transport.CopyOptions{Options: transport.Options{
		Copy: copyOpts, All: true, Partial: true, Registry: s.o.Registry, Referrers: s.o.Referrers,
	}})
	if err != nil {
		return err
	}
	counted := map[digest.Digest]bool{}
	for _, img := range imgs {
		r := Result{Source: ts.String(), Digest: img.Descriptor.Digest, Status: Unchanged}
		_ = l.Walk(img.Descriptor, func(d ocispec.Descriptor, _ []byte) error {
			if size, ok := added[d.Digest]; ok && !counted[d.Digest] {
				counted[d.Digest] = true
				r.Blobs++
				r.Bytes += size
			}
			return nil
		})
		if _, had := names[img.Descriptor.Digest.String()]; len(img.Names) == 0 {
			if r.Blobs > 0 || !had {
				r.Status = Copied
			}
			s.add(r)
			continue
		}
		// One result a name; the blobs go with the first.
		for i, n := range img.Names {
			ri := r
			ri.Name = n
			if i > 0 {
				ri.Blobs, ri.Bytes = 0, 0
			}
			if names[n] != img.Descriptor.Digest || ri.Blobs > 0 {
				ri.Status = Copied
			}
			s.add(ri)
		}
	}
	return nil
}

// nameMap lists what each name of l names (and each unnamed digest,
// keyed by itself).
func nameMap(l *layout.Layout) (map[string]digest.Digest, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	out := map[string]digest.Digest{}
	for _, m := range idx.Manifests {
		if n := m.Annotations[layout.AnnotationRefName]; n != "" {
			out[n] = m.Digest
		} else {
			out[m.Digest.String()] = m.Digest
		}
	}
	return out, nil
}

// planLocal says what copying a layout or archive source into l would
// move. An archive is planned from its blob list alone (its images are
// known only once it is read).
func (s *syncer) planLocal(ctx context.Context, l *layout.Layout, ts transport.Source, src *Source, names map[string]digest.Digest, copyOpts layout.CopyOptions) error {
	if kindOf(src.Ref) == fromArchive {
		_, file, _ := strings.Cut(src.Ref, ":")
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("open archive: %w", err)
		}
		defer f.Close()
		inv, err := archive.Inventory(ctx, f)
		if err != nil {
			return fmt.Errorf("read %s: %w", file, err)
		}
		r := Result{Source: ts.String(), Status: Planned}
		for d, size := range inv.Blobs {
			if !l.Blobs().Has(d, size) {
				r.Blobs++
				r.Bytes += size
			}
		}
		if r.Blobs == 0 {
			r.Status = Unchanged
		}
		s.add(r)
		return nil
	}
	ls, ok := ts.(transport.LocalSource)
	if !ok {
		return fmt.Errorf("%w: %s", ErrInvalidSource, src.Ref)
	}
	sl, imgs, err := ls.Local(transport.Options{All: true})
	if err != nil {
		return err
	}
	defer sl.Close()
	seen := map[digest.Digest]bool{}
	for _, img := range imgs {
		d := img.Descriptor
		if layout.IsIndex(d.MediaType) && !copyOpts.AllPlatforms {
			// Planning reads; it never writes the rewritten index a copy of
			// several platforms makes, so one platform stands for them.
			if md, err := sl.SelectManifest(d, &copyOpts.Platforms[0]); err == nil {
				d = md
			}
		}
		r := Result{Source: ts.String(), Digest: d.Digest, Status: Unchanged}
		if len(img.Names) > 0 {
			r.Name = img.Names[0]
		}
		err := sl.Walk(d, func(c ocispec.Descriptor, _ []byte) error {
			if !seen[c.Digest] && !l.Blobs().Has(c.Digest, c.Size) {
				seen[c.Digest] = true
				r.Blobs++
				r.Bytes += c.Size
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, n := range img.Names {
			if names[n] != d.Digest {
				r.Status = Planned
			}
		}
		if r.Blobs > 0 {
			r.Status = Planned
		}
		s.add(r)
	}
	return nil
}

// stagingPrefix names the working directories of syncs; one whose sync
// was killed is removed by the next sync staging in the same place.
const stagingPrefix = ".strata-sync-"

// stagingLayout makes a private layout in base (the system's temporary
// directory when empty) for images bound elsewhere; remove removes it.
func stagingLayout(base string) (l *layout.Layout, remove func(), err error) {
	work, err := tempdir.Make(base, stagingPrefix)
	if err != nil {
		return nil, nil, fmt.Errorf("create staging layout: %w", err)
	}
	l, err = layout.Init(filepath.Join(work.Path, "layout"))
	if err != nil {
		work.Remove()
		return nil, nil, fmt.Errorf("create staging layout: %w", err)
	}
	return l, func() { l.Close(); work.Remove() }, nil
}
