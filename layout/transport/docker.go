package transport

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/remote"
)

func init() {
	register(transport{
		Name: "docker",
		NewSource: func(ref string) (Source, error) {
			r, err := parseDockerName(ref)
			if err != nil {
				return nil, err
			}
			return &dockerSource{ref: r}, nil
		},
		NewDestination: func(ref string) (Destination, error) {
			r, err := parseDockerName(ref)
			if err != nil {
				return nil, err
			}
			return &dockerDest{ref: r}, nil
		},
	})
}

// parseDockerName parses what follows "docker:": //HOST/REPO[:TAG|@DIGEST].
func parseDockerName(s string) (remote.Reference, error) {
	rest, ok := strings.CutPrefix(s, "//")
	if !ok {
		return remote.Reference{}, fmt.Errorf("%w %q: a registry image is written docker://HOST/REPO[:TAG|@DIGEST]", ErrInvalidName, "docker:"+s)
	}
	r, err := remote.ParseReference(rest)
	if err != nil {
		return remote.Reference{}, fmt.Errorf("%w: %w", ErrInvalidName, err)
	}
	return r.WithDefaultTag(), nil
}

// dockerSource is docker://HOST/REPO[:TAG|@DIGEST] read from.
type dockerSource struct{ ref remote.Reference }

func (s *dockerSource) String() string { return remote.TransportPrefix + s.ref.String() }

// Fetch pulls the image into dst without naming it there. A registry
// reference names one image, so Options.All changes nothing.
func (s *dockerSource) Fetch(ctx context.Context, dst *layout.Layout, opts Options) ([]Image, error) {
	ropts := append(append([]remote.Option(nil), opts.Registry...), platformOptions(opts.Copy)...)
	if on := opts.Copy.OnBlob; on != nil {
		ropts = append(ropts, remote.WithProgress(func(p remote.Progress) {
			switch p.State {
			case remote.StateDone:
				on(p.Descriptor, blob.CopyStream)
			case remote.StateExists:
				on(p.Descriptor, blob.CopyExisted)
			}
		}))
	}
	if opts.Referrers {
		ropts = append(ropts, remote.WithReferrers())
	}
	res, err := remote.Fetch(ctx, dst, s.ref.String(), ropts...)
	if err != nil {
		return nil, err
	}
	img := Image{Descriptor: res.Descriptor, Duplicates: res.Duplicates, Referrers: res.Referrers}
	if s.ref.Tag != "" {
		img.Names = []string{s.ref.String()}
	}
	return []Image{img}, nil
}

// dockerDest is docker://HOST/REPO[:TAG|@DIGEST] written to.
type dockerDest struct{ ref remote.Reference }

func (d *dockerDest) String() string { return remote.TransportPrefix + d.ref.String() }

// Names is the one reference the image is pushed as; it also makes a copy
// of several images to one reference an error.
func (d *dockerDest) Names() []string { return []string{d.ref.String()} }

// Put pushes the image, whose platforms the copy has selected already.
func (d *dockerDest) Put(ctx context.Context, src *layout.Layout, imgs []Image, opts Options) error {
	if opts.Since != nil {
		return fmt.Errorf("%s: %w", d, ErrDeltaDestination)
	}
	if len(imgs) != 1 {
		return fmt.Errorf("%s names one image; the copy holds %d", d, len(imgs))
	}
	desc := imgs[0].Descriptor
	if !src.Blobs().Has(desc.Digest, desc.Size) {
		return fmt.Errorf("image %s is not in layout %s", desc.Digest, src.Dir())
	}
	ropts := opts.Registry
	if opts.Referrers {
		ropts = append(append([]remote.Option(nil), ropts...), remote.WithReferrerList(imgs[0].Referrers))
	}
	_, err := remote.Push(ctx, src, "@"+desc.Digest.String(), d.ref.String(), ropts...)
	return err
}

// platformOptions turns a copy's platform selection into pull options.
func platformOptions(c layout.CopyOptions) []remote.Option {
	if c.AllPlatforms {
		return []remote.Option{remote.WithAllPlatforms()}
	}
	var out []remote.Option
	for _, p := range c.Platforms {
		out = append(out, remote.WithPlatform(p))
	}
	return out
}
