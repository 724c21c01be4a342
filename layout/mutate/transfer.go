package mutate

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/transport"
)

// Change is a change made to the image root in whichever layout holds
// it: Mutate, Append or Rebase with their arguments bound.
type Change func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*Result, error)

// TransferOptions say what Transfer reads.
type TransferOptions struct {
	// Select, when set, takes these platforms out of an index read (one:
	// that platform's manifest alone) instead of the whole index.
	Select []ocispec.Platform
}

// ErrInPlace means an image cannot be changed where it is: it is on
// stdin, or in a registry.
var ErrInPlace = errors.New("cannot be changed in place")

// Transfer makes change on the image the transport name src names (a
// layout, oci:DIR[:REF], or an archive, oci-archive:FILE[:REF],
// docker-archive:FILE[:NAME:TAG]) and stores the result at dst, another
// transport name, with the names dst gives or, when it gives none, the
// names the image had. src is never written to, except:
//
// With dst empty, an archive src is changed in place: it is read whole
// into a private layout next to it, the image is changed there, and the
// archive is written again with every image it held (the changed one in
// the old one's place, under its names) under a temporary name renamed
// over it. A failure leaves it as it was.
//
// A change in a layout src without writing elsewhere needs no transfer:
// call the change on the layout itself and name the result.
//
// Indexes are read whole unless opts.Select names platforms: a
// docker-archive holds no index, so one platform has to be chosen for it.
func Transfer(ctx context.Context, src, dst string, opts TransferOptions, change Change) ([]transport.Image, *Result, error) {
	var res *Result
	convert := func(ctx context.Context, l *layout.Layout, d ocispec.Descriptor) (ocispec.Descriptor, error) {
		r, err := change(ctx, l, d)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		res = r
		return r.Root, nil
	}
	read := transport.Options{Copy: layout.CopyOptions{AllPlatforms: len(opts.Select) == 0, Platforms: opts.Select}}
	if dst == "" {
		// An archive keeps its format, and so what it can hold.
		imgs, err := inPlace(ctx, src, convert)
		return imgs, res, err
	}
	s, err := transport.ParseSource(src)
	if err != nil {
		return nil, nil, err
	}
	d, err := transport.ParseDestination(dst)
	if err != nil {
		return nil, nil, err
	}
	imgs, err := transport.Copy(ctx, s, d, transport.CopyOptions{
		Options: read,
		Convert: convert,
	})
	return imgs, res, err
}

// inPlace changes the image of the archive src and writes the archive
// again with all its images.
func inPlace(ctx context.Context, src string, convert func(context.Context, *layout.Layout, ocispec.Descriptor) (ocispec.Descriptor, error)) ([]transport.Image, error) {
	kind, rest, ok := strings.Cut(src, ":")
	file, _, _ := strings.Cut(rest, ":")
	if !ok || (kind != "oci-archive" && kind != "docker-archive") {
		return nil, fmt.Errorf("%s: %w: name where the result goes", src, ErrInPlace)
	}
	if file == "-" || file == "" {
		return nil, fmt.Errorf("%s: %w: it is read from stdin; name where the result goes", src, ErrInPlace)
	}
	archive := kind + ":" + file
	sel, err := transport.ParseSource(src)
	if err != nil {
		return nil, err
	}
	all, err := transport.ParseSource(archive)
	if err != nil {
		return nil, err
	}
	dst, err := transport.ParseDestination(archive)
	if err != nil {
		return nil, err
	}
	work, err := tempdir.Make(filepath.Dir(file), layout.CopyWorkPrefix)
	if err != nil {
		return nil, err
	}
	defer work.Remove()
	tmp, err := layout.Init(filepath.Join(work.Path, "layout"))
	if err != nil {
		return nil, err
	}
	defer tmp.Close()
	whole := transport.Options{Copy: layout.CopyOptions{AllPlatforms: true}}
	imgs, err := all.Fetch(ctx, tmp, whole)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", archive, err)
	}
	target := imgs
	if src != archive {
		// A name selects the image as the archive transport selects it.
		if target, err = sel.Fetch(ctx, tmp, whole); err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
	}
	if len(target) != 1 {
		return nil, fmt.Errorf("%s holds %d images: %w: name one as %s:NAME", file, len(target), layout.ErrAmbiguous, archive)
	}
	old := target[0].Descriptor
	nd, err := convert(ctx, tmp, old)
	if err != nil {
		return nil, err
	}
	if err := tmp.VerifyImage(ctx, nd, layout.VerifyOptions{}); err != nil {
		return nil, err
	}
	var changed []transport.Image
	for i := range imgs {
		if imgs[i].Descriptor.Digest == old.Digest {
			imgs[i].Descriptor = nd
			changed = append(changed, imgs[i])
		}
	}
	if err := dst.Put(ctx, tmp, imgs, whole); err != nil {
		return nil, fmt.Errorf("write %s: %w", file, err)
	}
	return changed, nil
}
