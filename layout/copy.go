package layout

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
)

// CopyOptions says which part of an image CopyImage transfers.
type CopyOptions struct {
	// Platforms selects manifests out of an index. With none (and not
	// AllPlatforms) the host platform is selected. One platform copies that
	// platform's manifest alone; several copy a rewritten index that lists
	// only those platforms.
	Platforms []ocispec.Platform
	// AllPlatforms copies an index whole, as it is.
	AllPlatforms bool
	// OnBlob, when set, is told about every blob transferred and how,
	// one call at a time.
	OnBlob func(d ocispec.Descriptor, how blob.CopyMethod)
	// Added, when set, records the blobs the copy adds to dst, and the
	// caller discards them if it fails later. Without it CopyImage
	// discards what it added when it fails itself.
	Added *Added
	// Referrers, when set, makes CopyImage follow referrers: the
	// referrers in src of every manifest and index it copies (found by
	// their subject, and cosign's by tag; see ReferrerIndex), and theirs
	// in turn, are copied whole too and collected in Referrers, which the
	// caller records in dst with the image (Layout.Record,
	// Index.AddReferrers). Without it referrers stay behind.
	Referrers *ReferrerSet
}

// CopyImage transfers the image desc points at, with every blob it
// reaches, from src into dst and returns the descriptor of what now stands
// for it in dst (desc itself, or the selected manifest, or a rewritten
// index). Blobs dst already holds are not transferred; on one filesystem
// the others are reflinked or hardlinked; every blob is verified before it
// becomes visible in dst. Children are stored before their parents, so a
// manifest in dst never points at a missing blob. Nothing is named in dst:
// see Tag and AddUntagged. Cancelling ctx stops the copy between blobs
// and within a megabyte of a blob being hashed or streamed; what it added
// is then discarded as on any failure.
func CopyImage(ctx context.Context, dst, src *Layout, desc ocispec.Descriptor, opts CopyOptions) (_ ocispec.Descriptor, err error) {
	if err := dst.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if opts.Added == nil {
		opts.Added = &Added{}
		defer func() {
			if err != nil {
				_, _ = dst.Discard(opts.Added)
			}
		}()
	}
	root, err := src.selectForCopy(desc, opts)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if root.newIndex != nil {
		// Copy the chosen manifests, then write the rewritten index.
		for _, m := range root.newIndex.Manifests {
			if err := copyGraph(ctx, dst, src, m, opts); err != nil {
				return ocispec.Descriptor{}, err
			}
			if err := copyReferrersOf(ctx, dst, src, m, opts); err != nil {
				return ocispec.Descriptor{}, err
			}
		}
		d, err := dst.PutJSON(root.desc.MediaType, root.newIndex)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("store rewritten index: %w", err)
		}
		return d, nil
	}
	if err := copyGraph(ctx, dst, src, root.desc, opts); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := copyReferrersOf(ctx, dst, src, root.desc, opts); err != nil {
		return ocispec.Descriptor{}, err
	}
	return root.desc, nil
}

// copyReferrersOf copies the referrers of root's graph, recursively, when
// opts asks for them, and collects them in opts.Referrers.
func copyReferrersOf(ctx context.Context, dst, src *Layout, root ocispec.Descriptor, opts CopyOptions) error {
	set := opts.Referrers
	if set == nil {
		return nil
	}
	ri, err := set.indexOf(ctx, src)
	if err != nil {
		return fmt.Errorf("find referrers of %s: %w", root.Digest, err)
	}
	refs, err := ri.Closure(ctx, root)
	if err != nil {
		return fmt.Errorf("find referrers of %s: %w", root.Digest, err)
	}
	for _, r := range refs {
		if !set.add(r) {
			continue
		}
		if err := copyGraph(ctx, dst, src, r.Descriptor, opts); err != nil {
			return fmt.Errorf("copy referrer %s of %s: %w", r.Descriptor.Digest, r.Subject, err)
		}
	}
	return nil
}

type copyRoot struct {
	desc     ocispec.Descriptor
	newIndex *Index // set when platform selection rewrites an index
}

// SelectPlatforms applies opts' platform selection to desc in l: it returns
// desc itself (a manifest, or an index with AllPlatforms), the manifest of
// the one platform asked for, or a rewritten index stored in l that lists
// only the platforms asked for. It never changes index.json.
func (l *Layout) SelectPlatforms(desc ocispec.Descriptor, opts CopyOptions) (ocispec.Descriptor, error) {
	root, err := l.selectForCopy(desc, opts)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if root.newIndex == nil {
		return root.desc, nil
	}
	d, err := l.PutJSON(root.desc.MediaType, root.newIndex)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store rewritten index: %w", err)
	}
	return d, nil
}

func (l *Layout) selectForCopy(desc ocispec.Descriptor, opts CopyOptions) (copyRoot, error) {
	desc = stripName(desc)
	if desc.MediaType == "" {
		b, err := l.ReadBlob(desc, MaxManifestSize)
		if err != nil {
			return copyRoot{}, fmt.Errorf("read %s: %w", desc.Digest, err)
		}
		desc.MediaType = sniffMediaType(b)
	}
	if !IsIndex(desc.MediaType) || opts.AllPlatforms {
		return copyRoot{desc: desc}, nil
	}
	if len(opts.Platforms) <= 1 {
		var p *ocispec.Platform
		if len(opts.Platforms) == 1 {
			p = &opts.Platforms[0]
		}
		md, err := l.SelectManifest(desc, p)
		if err != nil {
			return copyRoot{}, err
		}
		return copyRoot{desc: md}, nil
	}
	idx, err := l.ReadIndex(desc)
	if err != nil {
		return copyRoot{}, err
	}
	out := &Index{Index: idx.Index, Extra: idx.Extra}
	out.Manifests = nil
	seen := map[digest.Digest]bool{}
	for _, p := range opts.Platforms {
		md, err := l.SelectManifest(desc, &p)
		if err != nil {
			return copyRoot{}, err
		}
		if seen[md.Digest] {
			continue
		}
		seen[md.Digest] = true
		if md.Platform == nil {
			np := platforms.Normalize(p)
			md.Platform = &np
		}
		out.Manifests = append(out.Manifests, md)
	}
	return copyRoot{desc: desc, newIndex: out}, nil
}

// copyGraph transfers every blob reachable from root, leaves first, layers
// on all cores.
func copyGraph(ctx context.Context, dst, src *Layout, root ocispec.Descriptor, opts CopyOptions) error {
	var order []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	err := src.Walk(root, func(d ocispec.Descriptor, _ []byte) error {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			order = append(order, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read image %s: %w", root.Digest, err)
	}
	// In reverse pre-order every blob comes after all it points at. Leaves
	// (configs, layers) have no order among themselves: copy them in
	// parallel, then the manifests and indexes in order.
	var leaves, parents []ocispec.Descriptor
	for i := len(order) - 1; i >= 0; i-- {
		d := order[i]
		if IsIndex(d.MediaType) || IsManifest(d.MediaType) {
			parents = append(parents, d)
		} else {
			leaves = append(leaves, d)
		}
	}
	if err := copyBlobs(ctx, dst, src, leaves, opts); err != nil {
		return err
	}
	for _, d := range parents {
		if err := copyBlob(ctx, dst, src, d, opts); err != nil {
			return err
		}
	}
	return nil
}

func copyBlobs(ctx context.Context, dst, src *Layout, descs []ocispec.Descriptor, opts CopyOptions) error {
	workers := runtime.GOMAXPROCS(0)
	if workers > len(descs) {
		workers = len(descs)
	}
	jobs := make(chan ocispec.Descriptor)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	if on := opts.OnBlob; on != nil {
		// Blobs are copied in parallel; callers get one call at a time.
		var onMu sync.Mutex
		opts.OnBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
			onMu.Lock()
			defer onMu.Unlock()
			on(d, how)
		}
	}
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				if err := copyBlob(ctx, dst, src, d, opts); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for _, d := range descs {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func copyBlob(ctx context.Context, dst, src *Layout, d ocispec.Descriptor, opts CopyOptions) error {
	how, err := dst.blobs.CopyFrom(ctx, src.blobs, d.Digest, d.Size)
	if err != nil {
		return fmt.Errorf("copy %s %s: %w", kindOf(d.MediaType), d.Digest, err)
	}
	if how != blob.CopyExisted && opts.Added != nil {
		opts.Added.Add(d.Digest)
	}
	if opts.OnBlob != nil {
		opts.OnBlob(d, how)
	}
	return nil
}

// kindOf names what a media type is, for messages.
func kindOf(mt string) string {
	switch {
	case IsIndex(mt):
		return "index"
	case IsManifest(mt):
		return "manifest"
	case IsConfig(mt):
		return "config"
	case IsLayer(mt):
		return "layer"
	}
	return "blob"
}
