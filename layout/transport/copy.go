package transport

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
)

// CopyOptions configure Copy.
type CopyOptions struct {
	Options
	// Convert, when set, rewrites each fetched image (media types,
	// compression) in the layout that holds it and returns the new
	// descriptor; see layout.Convert. ctx is the copy's.
	Convert func(ctx context.Context, l *layout.Layout, d ocispec.Descriptor) (ocispec.Descriptor, error)
	// NameCanonical also records each NAME as NAME@DIGEST (the tag, if
	// any, replaced by the digest of what was copied).
	NameCanonical bool
	// Names, when set, names the copied images one each, in the source's
	// order (strata save --name): the i-th image is stored as Names[i]
	// alone. It needs exactly one name per image and a destination that
	// gives none itself.
	Names []string
}

// fullNamer is a Destination that names images by full names rather than
// bare tags: an archive, whose loaders read every name as docker does (v1
// would become docker.io/library/v1:latest).
type fullNamer interface{ fullNames() bool }

// Copy copies the images src names to dst and returns them as dst now
// holds them. Images keep the names the source gives them unless the
// destination reference gives names, which it can only do for one image.
func Copy(ctx context.Context, src Source, dst Destination, opts CopyOptions) (imgs []Image, err error) {
	if opts.Referrers && opts.Convert != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", src, dst, ErrReferrersConvert)
	}
	if dd, ok := dst.(discarder); ok {
		defer func() {
			if err != nil {
				if u, derr := dd.Discard(); derr != nil {
					err = fmt.Errorf("%w (and taking back what it wrote: %v)", err, derr)
				} else if u.Busy && u.Kept > 0 {
					err = &NotUndoneError{Err: err, Dest: dst.String(), Undone: u}
				}
			}
		}()
	}
	if ld, ok := dst.(LayoutDestination); ok {
		l, err := ld.OpenLayout()
		if err != nil {
			return nil, err
		}
		defer l.Close()
		if opts.Convert == nil {
			imgs, err := src.Fetch(ctx, l, opts.Options)
			if err != nil {
				return nil, fmt.Errorf("copy from %s: %w", src, err)
			}
			return finish(ctx, l, dst, imgs, opts)
		}
		// Converting: stage inside the destination's state directory (one
		// filesystem, so blobs move by hardlink) so that only the
		// converted image's blobs reach the destination.
		stateDir, err := l.MakeStateDir()
		if err != nil {
			return nil, err
		}
		return staged(ctx, stateDir, src, dst, opts)
	}
	if ls, ok := src.(LocalSource); ok && opts.Convert == nil && len(opts.Copy.Platforms) <= 1 {
		l, imgs, err := ls.Local(opts.Options)
		if err == nil {
			defer l.Close()
			for i := range imgs {
				// With at most one platform nothing is written to the source.
				d, err := l.SelectPlatforms(imgs[i].Descriptor, opts.Copy)
				if err != nil {
					return nil, fmt.Errorf("copy from %s: %w", src, err)
				}
				imgs[i].Descriptor = d
			}
			if opts.Referrers {
				if imgs, err = localReferrers(ctx, l, imgs); err != nil {
					return nil, fmt.Errorf("copy from %s: %w", src, err)
				}
			}
			return finish(ctx, l, dst, imgs, opts)
		}
		if !errors.Is(err, errNotLocal) {
			return nil, fmt.Errorf("copy from %s: %w", src, err)
		}
	}
	// Stage through a private layout next to the destination.
	base := ""
	if sd, ok := dst.(StagingDestination); ok {
		base = sd.StagingDir()
	}
	return staged(ctx, base, src, dst, opts)
}

// staged copies through a private layout made in base.
func staged(ctx context.Context, base string, src Source, dst Destination, opts CopyOptions) ([]Image, error) {
	work, err := tempdir.Make(base, layout.CopyWorkPrefix)
	if err != nil {
		return nil, fmt.Errorf("create staging layout: %w", err)
	}
	defer work.Remove()
	tmp, err := layout.Init(filepath.Join(work.Path, "layout"))
	if err != nil {
		return nil, fmt.Errorf("create staging layout: %w", err)
	}
	defer tmp.Close()
	imgs, err := src.Fetch(ctx, tmp, opts.Options)
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", src, err)
	}
	return finish(ctx, tmp, dst, imgs, opts)
}

// discarder is a Destination that can undo what a failed copy created.
type discarder interface {
	Discard() (layout.Undone, error)
}

// NotUndoneError is the error of a failed copy that could not take back
// everything it wrote to its destination, because another process held
// the destination layout: Undone says what stays (gc removes it).
type NotUndoneError struct {
	Err    error
	Dest   string
	Undone layout.Undone
}

func (e *NotUndoneError) Error() string {
	return fmt.Sprintf("%v (%d blob(s) it wrote stay in %s, which another process is writing to)", e.Err, e.Undone.Kept, e.Dest)
}

func (e *NotUndoneError) Unwrap() error { return e.Err }

// finish converts and names the images held in l and hands them to dst.
func finish(ctx context.Context, l *layout.Layout, dst Destination, imgs []Image, opts CopyOptions) ([]Image, error) {
	if len(imgs) == 0 {
		return nil, fmt.Errorf("copy to %s: the source holds no images", dst)
	}
	// Whatever the source, an image goes on only whole and consistent
	// (archives were checked down to their layers' diffIDs as they were
	// read; layers are not decompressed here).
	for _, img := range imgs {
		if err := l.VerifyImage(ctx, img.Descriptor, layout.VerifyOptions{}); err != nil {
			return nil, fmt.Errorf("copy to %s: %w", dst, err)
		}
		for _, r := range img.Referrers {
			if err := l.VerifyImage(ctx, r.Descriptor, layout.VerifyOptions{}); err != nil {
				return nil, fmt.Errorf("copy to %s: referrer %s of %s: %w", dst, r.Descriptor.Digest, r.Subject, err)
			}
		}
	}
	if opts.Convert != nil {
		for i := range imgs {
			d, err := opts.Convert(ctx, l, imgs[i].Descriptor)
			if err != nil {
				return nil, fmt.Errorf("convert image %s: %w", imgs[i].Descriptor.Digest, err)
			}
			imgs[i].Descriptor = d
		}
	}
	names := dst.Names()
	switch {
	case names != nil && len(opts.Names) > 0:
		return nil, fmt.Errorf("copy to %s: the destination names the image already; give names there or as Names, not both", dst)
	case names != nil:
		if len(imgs) != 1 {
			return nil, fmt.Errorf("copy to %s: the source holds %d images; a destination name can only name one", dst, len(imgs))
		}
		rename(&imgs[0], names)
	case len(opts.Names) > 0:
		if len(opts.Names) != len(imgs) {
			return nil, fmt.Errorf("copy to %s: %d names for %d images: give one name per image, in order", dst, len(opts.Names), len(imgs))
		}
		for i := range imgs {
			rename(&imgs[i], opts.Names[i:i+1])
		}
	default:
		if fn, ok := dst.(fullNamer); ok && fn.fullNames() {
			// strata save ./L:v1 of an image pulled or loaded under the
			// local tag v1: the archive names it by its full name.
			for i := range imgs {
				imgs[i].Names = preferFull(imgs[i])
			}
		}
	}
	if opts.NameCanonical {
		for i := range imgs {
			var extra []string
			for _, n := range imgs[i].Names {
				if c := canonical(n, imgs[i].Descriptor); c != "" {
					extra = append(extra, c)
				}
			}
			imgs[i].Names = append(imgs[i].Names, extra...)
		}
	}
	if err := dst.Put(ctx, l, imgs, opts.Options); err != nil {
		return nil, fmt.Errorf("copy to %s: %w", dst, err)
	}
	return imgs, nil
}

// ErrReferrersConvert means a copy was asked to carry referrers and to
// convert the image: referrers name their subject by digest, which a
// conversion changes, so they would refer to nothing.
var ErrReferrersConvert = errors.New("referrers cannot follow a converted image (its digest changes)")

// localReferrers finds the referrers of imgs, as selected, in l, and
// leaves out of imgs those that travel as referrers of another: untagged,
// or named only by cosign's tags.
func localReferrers(ctx context.Context, l *layout.Layout, imgs []Image) ([]Image, error) {
	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		return nil, err
	}
	roots := make([]ocispec.Descriptor, len(imgs))
	for i := range imgs {
		roots[i] = imgs[i].Descriptor
		if imgs[i].Referrers, err = ri.Closure(ctx, imgs[i].Descriptor); err != nil {
			return nil, err
		}
	}
	carried, err := ri.Carried(ctx, roots)
	if err != nil {
		return nil, err
	}
	return dropCarried(imgs, carried), nil
}

// dropCarried leaves out of imgs those whose digest is in carried and
// that have no name but cosign's tags.
func dropCarried(imgs []Image, carried map[digest.Digest]bool) []Image {
	if len(carried) == 0 {
		return imgs
	}
	kept := imgs[:0]
	for _, img := range imgs {
		if carried[img.Descriptor.Digest] && !slices.ContainsFunc(img.Names, func(n string) bool { return !layout.IsReferrerName(n) }) {
			continue
		}
		kept = append(kept, img)
	}
	return kept
}

// rename gives img the names a destination or the caller chose, keeping
// the source's own full name as FullName.
func rename(img *Image, names []string) {
	if img.FullName == "" {
		for _, n := range img.Names {
			if !layout.IsBareTag(n) {
				img.FullName = n
				break
			}
		}
	}
	img.Names = append([]string(nil), names...)
	for _, n := range names {
		if n == img.FullName {
			img.FullName = ""
		}
	}
}

// preferFull replaces an image's bare-tag names by its full name, if it
// has one.
func preferFull(img Image) []string {
	if img.FullName == "" {
		return img.Names
	}
	var out []string
	for _, n := range img.Names {
		if layout.IsBareTag(n) {
			n = img.FullName
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// canonical returns NAME@DIGEST for a name: its tag, if any, is replaced by
// the digest. Names that already carry a digest give "".
func canonical(name string, d ocispec.Descriptor) string {
	if strings.Contains(name, "@") {
		return ""
	}
	repo := name
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		repo = name[:i]
	}
	if repo == "" {
		return ""
	}
	return repo + "@" + d.Digest.String()
}

// Join makes one source of several, for saving images of several layouts
// or references into one archive. The images keep each source's names.
func Join(srcs ...Source) Source {
	if len(srcs) == 1 {
		return srcs[0]
	}
	return joined(srcs)
}

type joined []Source

func (j joined) String() string {
	parts := make([]string, len(j))
	for i, s := range j {
		parts[i] = s.String()
	}
	return strings.Join(parts, " ")
}

func (j joined) Fetch(ctx context.Context, dst *layout.Layout, opts Options) ([]Image, error) {
	var out []Image
	for _, s := range j {
		imgs, err := s.Fetch(ctx, dst, opts)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		out = append(out, imgs...)
	}
	return out, nil
}

// Local serves the images in place when every source is a reference into
// one layout, the common case of saving several tags of one layout.
func (j joined) Local(opts Options) (*layout.Layout, []Image, error) {
	dir := ""
	for _, s := range j {
		o, ok := s.(*ociSource)
		if !ok || (dir != "" && !sameDir(dir, o.dir)) {
			return nil, nil, errNotLocal
		}
		dir = o.dir
	}
	l, err := layout.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	var out []Image
	for _, s := range j {
		imgs, err := s.(*ociSource).resolve(l, opts)
		if err != nil {
			l.Close()
			return nil, nil, fmt.Errorf("%s: %w", s, err)
		}
		out = append(out, imgs...)
	}
	return l, out, nil
}

// errNotLocal makes Copy stage the images instead of reading them in place.
var errNotLocal = errors.New("sources are not one layout")
