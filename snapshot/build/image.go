package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/transport"
)

// transportPrefixes are the names FROM and COPY --from read as transports.
var transportPrefixes = []string{"oci:", "oci-archive:", "docker-archive:", "docker://"}

// image brings the image name (a transport name, a LAYOUT:REF whose
// LAYOUT is a layout directory, or a registry image) into the cache
// layout and returns its manifest for platform p. A registry image
// pulled once is named there by its full name and used again without
// asking the registry, as Docker uses an image it has.
func (b *builder) image(ctx context.Context, name string, p ocispec.Platform) (*layout.Image, error) {
	memo := name + "|" + platforms.Format(p)
	if img := b.images[memo]; img != nil {
		return img, nil
	}
	var srcName, keepAs string
	switch {
	case hasTransport(name):
		srcName = name
	case isLayoutRef(name):
		srcName = "oci:" + name
	default:
		full := layout.NormalizeName(name)
		if full == "" {
			return nil, fmt.Errorf("%q is neither a stage, a layout (LAYOUT:REF), a transport name nor an image name", name)
		}
		if d, err := b.cache.l.Resolve(full); err == nil {
			return b.selectImage(memo, d, p)
		}
		srcName, keepAs = "docker://"+full, full
	}
	src, err := transport.ParseSource(srcName)
	if err != nil {
		return nil, err
	}
	imgs, err := src.Fetch(ctx, b.cache.l, transport.Options{Copy: layout.CopyOptions{Platforms: []ocispec.Platform{p}}, Registry: b.o.Registry})
	if err != nil {
		return nil, err
	}
	if len(imgs) != 1 {
		return nil, fmt.Errorf("%s names %d images, want one", name, len(imgs))
	}
	if keepAs != "" {
		if err := b.cache.l.Tag(imgs[0].Descriptor, keepAs); err != nil {
			return nil, err
		}
	}
	return b.selectImage(memo, imgs[0].Descriptor, p)
}

// selectImage reads the manifest of d for platform p.
func (b *builder) selectImage(memo string, d ocispec.Descriptor, p ocispec.Platform) (*layout.Image, error) {
	md, err := b.cache.l.SelectManifest(d, &p)
	if err != nil {
		return nil, err
	}
	img, err := b.cache.l.ReadImage(md)
	if err != nil {
		return nil, err
	}
	b.images[memo] = img
	return img, nil
}

func hasTransport(name string) bool {
	for _, p := range transportPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// isLayoutRef says whether name is LAYOUT[:REF] with LAYOUT an image
// layout directory.
func isLayoutRef(name string) bool {
	dir, _, err := layout.SplitRef(name)
	if err != nil {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, layout.LayoutFile))
	return err == nil
}

// output stores the built image under every name and in every output.
func (b *builder) output(ctx context.Context, img *layout.Image) error {
	for _, t := range b.o.Tags {
		dir, ref, _ := strings.Cut(t, ":")
		if dir == "" {
			return fmt.Errorf("tag %q: no layout directory", t)
		}
		var names []string
		for _, n := range strings.Split(ref, ",") {
			if n = strings.TrimSpace(n); n != "" {
				if err := layout.ValidateRef(n); err != nil {
					return fmt.Errorf("tag %q: %w", t, err)
				}
				names = append(names, n)
			}
		}
		if err := b.tag(ctx, dir, img, names); err != nil {
			return fmt.Errorf("tag %s: %w", t, err)
		}
	}
	for _, out := range b.o.Outputs {
		dst, err := transport.ParseDestination(out)
		if err != nil {
			return fmt.Errorf("output %s: %w", out, err)
		}
		src, err := transport.ParseSource("oci:" + b.cache.dir + ":@" + img.Descriptor.Digest.String())
		if err != nil {
			return err
		}
		if _, err := transport.Copy(ctx, src, dst, transport.CopyOptions{Options: transport.Options{Registry: b.o.Registry}}); err != nil {
			return fmt.Errorf("output %s: %w", out, err)
		}
	}
	return nil
}

// tag copies the image into the layout dir and names it.
func (b *builder) tag(ctx context.Context, dir string, img *layout.Image, names []string) (err error) {
	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_, _ = l.Undo()
		}
		l.Close()
	}()
	d, err := layout.CopyImage(ctx, l, b.cache.l, img.Descriptor, layout.CopyOptions{})
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return l.AddUntagged(d)
	}
	return l.Tag(d, names...)
}
