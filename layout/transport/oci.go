package transport

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

func init() {
	register(transport{
		Name: "oci",
		NewSource: func(ref string) (Source, error) {
			dir, r, err := layout.SplitRef(ref)
			if err != nil {
				return nil, err
			}
			return &ociSource{dir: dir, ref: r}, nil
		},
		NewDestination: func(ref string) (Destination, error) {
			dir, r, _ := cutRef(ref)
			if dir == "" {
				return nil, fmt.Errorf("%w %q: empty layout path", ErrInvalidName, "oci:"+ref)
			}
			names, err := splitNames(r)
			if err != nil {
				return nil, err
			}
			for _, n := range names {
				if err := layout.ValidateRef(n); err != nil {
					return nil, err
				}
				if _, ok := layout.IsDigestRef(n); ok {
					return nil, fmt.Errorf("%w %q: a destination is named by a tag or name, not a digest", ErrInvalidName, n)
				}
			}
			return &ociDest{dir: dir, names: names}, nil
		},
	})
}

func cutRef(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// ociSource is oci:DIR[:REF].
type ociSource struct{ dir, ref string }

func (s *ociSource) String() string {
	if s.ref == "" {
		return "oci:" + s.dir
	}
	return "oci:" + s.dir + ":" + s.ref
}

// Local resolves the images: the one REF names, the layout's only image,
// or with All every image of index.json with all its names.
func (s *ociSource) Local(opts Options) (*layout.Layout, []Image, error) {
	l, err := layout.Open(s.dir)
	if err != nil {
		return nil, nil, err
	}
	imgs, err := s.resolve(l, opts)
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, imgs, nil
}

func (s *ociSource) resolve(l *layout.Layout, opts Options) ([]Image, error) {
	if s.ref == "" && opts.All {
		imgs, err := s.resolveAll(l)
		if err != nil || opts.Referrers {
			return imgs, err
		}
		// Untagged referrers come only with Referrers, as their images'.
		kept := imgs[:0]
		for _, img := range imgs {
			if len(img.Names) == 0 && l.IsReferrer(img.Descriptor) {
				continue
			}
			kept = append(kept, img)
		}
		if len(kept) == 0 {
			return nil, fmt.Errorf("layout %s holds no images but referrers", s.dir)
		}
		return kept, nil
	}
	desc, err := l.Resolve(s.ref)
	if err != nil {
		return nil, err
	}
	return []Image{s.image(desc)}, nil
}

// resolveAll lists every image of index.json with all its names.
func (s *ociSource) resolveAll(l *layout.Layout) ([]Image, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	var out []Image
	pos := map[digest.Digest]int{}
	for _, m := range idx.Manifests {
		i, ok := pos[m.Digest]
		if !ok {
			i = len(out)
			pos[m.Digest] = i
			d := m
			d.Annotations = nil
			for k, v := range m.Annotations {
				if k != layout.AnnotationRefName {
					if d.Annotations == nil {
						d.Annotations = map[string]string{}
					}
					d.Annotations[k] = v
				}
			}
			out = append(out, Image{Descriptor: d})
		}
		if n := m.Annotations[layout.AnnotationRefName]; n != "" {
			out[i].Names = append(out[i].Names, n)
		}
		if out[i].FullName == "" {
			out[i].FullName = m.Annotations[layout.AnnotationImageName]
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("layout %s holds no images", s.dir)
	}
	return out, nil
}

// image is the Image of the entry desc that s.ref found.
func (s *ociSource) image(desc ocispec.Descriptor) Image {
	stored, full := desc.Annotations[layout.AnnotationRefName], desc.Annotations[layout.AnnotationImageName]
	img := Image{Descriptor: desc, FullName: full}
	// A name typed as it is stored goes on as typed; one found as docker
	// reads names (ov1 for docker.io/library/ov1:latest) goes on as stored.
	name := stored
	if name == "" {
		name = full
	}
	if s.ref == stored || s.ref == full {
		if _, isDigest := layout.IsDigestRef(s.ref); s.ref != "" && !isDigest {
			name = s.ref
		}
	}
	if name != "" {
		img.Names = []string{name}
	}
	if img.FullName == name {
		img.FullName = ""
	}
	img.Descriptor.Annotations = nil
	for k, v := range desc.Annotations {
		if k != layout.AnnotationRefName && k != layout.AnnotationImageName {
			if img.Descriptor.Annotations == nil {
				img.Descriptor.Annotations = map[string]string{}
			}
			img.Descriptor.Annotations[k] = v
		}
	}
	return img
}

func (s *ociSource) Fetch(ctx context.Context, dst *layout.Layout, opts Options) (_ []Image, err error) {
	l, imgs, err := s.Local(opts)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	// Several images are one operation: a failure takes back what the
	// ones before it added.
	copyOpts := opts.Copy
	if copyOpts.Added == nil {
		copyOpts.Added = &layout.Added{}
		defer func() {
			if err != nil {
				_, _ = dst.Discard(copyOpts.Added)
			}
		}()
	}
	if opts.Referrers {
		ri, err := l.ReferrerIndex(ctx)
		if err != nil {
			return nil, err
		}
		roots := make([]ocispec.Descriptor, len(imgs))
		for i := range imgs {
			roots[i] = imgs[i].Descriptor
		}
		carried, err := ri.Carried(ctx, roots)
		if err != nil {
			return nil, err
		}
		imgs = dropCarried(imgs, carried)
		copyOpts.Referrers = &layout.ReferrerSet{}
		copyOpts.Referrers.UseIndex(l, ri)
	}
	for i := range imgs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		d, err := layout.CopyImage(ctx, dst, l, imgs[i].Descriptor, copyOpts)
		if err != nil {
			return nil, err
		}
		imgs[i].Descriptor = d
		if copyOpts.Referrers != nil {
			imgs[i].Referrers = copyOpts.Referrers.Take()
		}
	}
	return imgs, nil
}

// ociDest is oci:DIR[:NAME[,NAME...]].
type ociDest struct {
	dir   string
	names []string
	// l is the layout OpenLayout opened, kept for Put and Discard: it
	// knows whether it made the layout and which blobs it wrote.
	l *layout.Layout
}

func (d *ociDest) String() string { return "oci:" + d.dir }

func (d *ociDest) Names() []string { return d.names }

// OpenLayout opens the layout, creating it if needed. Every call returns
// the same Layout; closing it only drops its hold, which its next write
// takes again.
func (d *ociDest) OpenLayout() (*layout.Layout, error) {
	if d.l != nil {
		return d.l, nil
	}
	l, err := layout.Init(d.dir)
	if err != nil {
		return nil, err
	}
	d.l = l
	return l, nil
}

// Discard takes back what a failed copy wrote: the layout itself when the
// copy made it and nobody else has used it since, else the blobs the copy
// added that no image uses (see layout.Undo).
func (d *ociDest) Discard() (layout.Undone, error) {
	if d.l == nil {
		return layout.Undone{}, nil
	}
	return d.l.Undo()
}

// Put copies the images in (when src is another layout) and names them all
// in one update of index.json: a name that named another image moves to
// the new one.
func (d *ociDest) Put(ctx context.Context, src *layout.Layout, imgs []Image, opts Options) error {
	if opts.Since != nil {
		return fmt.Errorf("%s: %w", d, ErrDeltaDestination)
	}
	l, err := d.OpenLayout()
	if err != nil {
		return err
	}
	defer l.Close()
	same := sameDir(l.Dir(), src.Dir())
	for i := range imgs {
		for _, n := range imgs[i].Names {
			if err := layout.ValidateRef(n); err != nil {
				return err
			}
		}
		if same {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// The images are selected already: copy them as they are.
		nd, err := layout.CopyImage(ctx, l, src, imgs[i].Descriptor, layout.CopyOptions{AllPlatforms: true})
		if err != nil {
			return err
		}
		imgs[i].Descriptor = nd
		if err := layout.CopyReferrers(ctx, l, src, imgs[i].Referrers, layout.CopyOptions{}); err != nil {
			return err
		}
	}
	for _, img := range imgs {
		if !l.Blobs().Has(img.Descriptor.Digest, img.Descriptor.Size) {
			return fmt.Errorf("image %s is not in layout %s", img.Descriptor.Digest, d.dir)
		}
		for _, r := range img.Referrers {
			if !l.Blobs().Has(r.Descriptor.Digest, r.Descriptor.Size) {
				return fmt.Errorf("referrer %s of %s is not in layout %s", r.Descriptor.Digest, r.Subject, d.dir)
			}
		}
	}
	return l.UpdateIndex(func(idx *layout.Index) error { return nameImages(idx, imgs) })
}

// nameImages records imgs in idx: each under each of its names (a name
// that named another image moves), an unnamed one once, and their
// referrers beside them.
func nameImages(idx *layout.Index, imgs []Image) error {
	for _, img := range imgs {
		desc := img.Descriptor
		if len(img.Names) == 0 {
			present := false
			for _, m := range idx.Manifests {
				if m.Digest == desc.Digest {
					present = true
					break
				}
			}
			if !present {
				idx.Manifests = append(idx.Manifests, desc)
			}
			idx.AddReferrers(nil, img.Referrers)
			continue
		}
		for _, n := range img.Names {
			kept := idx.Manifests[:0]
			for _, m := range idx.Manifests {
				name := m.Annotations[layout.AnnotationRefName]
				if name == n || (name == "" && m.Digest == desc.Digest) {
					continue
				}
				kept = append(kept, m)
			}
			idx.Manifests = kept
			nd := desc
			nd.Annotations = map[string]string{layout.AnnotationRefName: n}
			for k, v := range desc.Annotations {
				if k != layout.AnnotationRefName && k != layout.AnnotationImageName {
					nd.Annotations[k] = v
				}
			}
			// The registry or archive name beside a name of the
			// user's, as pull records it and containerd keeps it.
			if img.FullName != "" && img.FullName != n {
				nd.Annotations[layout.AnnotationImageName] = img.FullName
			}
			idx.Manifests = append(idx.Manifests, nd)
		}
		idx.AddReferrers(img.Names, img.Referrers)
	}
	return nil
}

func sameDir(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && filepath.Clean(aa) == filepath.Clean(bb)
}
