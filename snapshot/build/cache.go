package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/layout/transport"
)

// cacheRefPrefix names a step's image in the cache layout:
// cache-<hex of its key>.
const cacheRefPrefix = "cache-"

// cacheRef is the name of the step image of key.
func cacheRef(key digest.Digest) string { return cacheRefPrefix + key.Encoded() }

// AnnotationCacheKey holds a step's cache key on its entry of an exported
// cache index (CacheTo).
const AnnotationCacheKey = "dev.strata.build.cache-key"

// cache is the build cache: the layout in the store whose images are
// every step's result, named by the step's key.
type cache struct {
	dir string
	l   *layout.Layout
	// names maps cache refs to images; pending are the names this build
	// added that index.json does not hold yet.
	names   map[string]ocispec.Descriptor
	pending map[string]ocispec.Descriptor
	// used are the keys of this build's steps, in order (CacheTo).
	used []digest.Digest
}

func openCache(root string) (*cache, error) {
	dir := CacheDir(root)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("build cache: %w", err)
	}
	l, err := layout.Init(dir)
	if err != nil {
		return nil, fmt.Errorf("build cache %s: %w", dir, err)
	}
	c := &cache{dir: dir, l: l, names: map[string]ocispec.Descriptor{}, pending: map[string]ocispec.Descriptor{}}
	idx, err := l.Index()
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("build cache %s: %w", dir, err)
	}
	for _, m := range idx.Manifests {
		if n := m.Annotations[layout.AnnotationRefName]; strings.HasPrefix(n, cacheRefPrefix) {
			c.names[n] = m
		}
	}
	return c, nil
}

func (c *cache) close() error { return c.l.Close() }

// lookup finds the step image of key.
func (c *cache) lookup(key digest.Digest) (*layout.Image, bool, error) {
	d, ok := c.names[cacheRef(key)]
	if !ok {
		return nil, false, nil
	}
	img, err := c.l.ReadImage(d)
	if err != nil {
		// A damaged entry is a miss; the step runs again and replaces it.
		return nil, false, nil
	}
	for _, ly := range img.Manifest.Layers {
		if !c.l.Blobs().Has(ly.Digest, ly.Size) {
			return nil, false, nil
		}
	}
	c.used = append(c.used, key)
	return img, true, nil
}

// remember records a step image that is named already (a commit names
// its image).
func (c *cache) remember(key digest.Digest, d ocispec.Descriptor) {
	c.names[cacheRef(key)] = d
	c.used = append(c.used, key)
}

// name records a step image, named with the next flush.
func (c *cache) name(key digest.Digest, d ocispec.Descriptor) {
	c.names[cacheRef(key)] = d
	c.pending[cacheRef(key)] = d
	c.used = append(c.used, key)
}

// flush names the step images of name in one index update.
func (c *cache) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	err := c.l.UpdateIndex(func(idx *layout.Index) error {
		kept := idx.Manifests[:0]
		for _, m := range idx.Manifests {
			if _, ok := c.pending[m.Annotations[layout.AnnotationRefName]]; !ok {
				kept = append(kept, m)
			}
		}
		idx.Manifests = kept
		for n, d := range c.pending {
			d.Annotations = map[string]string{layout.AnnotationRefName: n}
			idx.Manifests = append(idx.Manifests, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("build cache %s: %w", c.dir, err)
	}
	c.pending = map[string]ocispec.Descriptor{}
	return nil
}

// putImage stores an image of cfg and layers (OCI media types) in the
// cache layout.
func (c *cache) putImage(cfg *layout.Config, layers []ocispec.Descriptor) (*layout.Image, error) {
	ls := make([]ocispec.Descriptor, len(layers))
	for i, l := range layers {
		l.MediaType = ociLayerType(l.MediaType)
		ls[i] = l
	}
	d, err := c.l.PutImage(cfg, ls, nil)
	if err != nil {
		return nil, err
	}
	return c.l.ReadImage(d)
}

// ociLayerType names a Docker layer media type by its OCI equivalent.
func ociLayerType(mt string) string {
	switch mt {
	case layout.MediaTypeDockerLayer:
		return ocispec.MediaTypeImageLayer
	case layout.MediaTypeDockerLayerGzip:
		return ocispec.MediaTypeImageLayerGzip
	case layout.MediaTypeDockerLayerZstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return mt
}

// importFrom copies the step images of exported caches into the store's
// cache: each source is an image index whose manifests carry their keys.
func (c *cache) importFrom(ctx context.Context, froms []string, reg []remote.Option) error {
	for _, from := range froms {
		src, err := transport.ParseSource(from)
		if err != nil {
			return fmt.Errorf("--cache-from %s: %w", from, err)
		}
		imgs, err := src.Fetch(ctx, c.l, transport.Options{Copy: layout.CopyOptions{AllPlatforms: true}, Registry: reg})
		if err != nil {
			if errors.Is(err, layout.ErrRefNotFound) || errors.Is(err, os.ErrNotExist) {
				// A cache that is not there yet is an empty one, as in
				// BuildKit.
				continue
			}
			return fmt.Errorf("--cache-from %s: %w", from, err)
		}
		for _, img := range imgs {
			if !layout.IsIndex(img.Descriptor.MediaType) {
				return fmt.Errorf("--cache-from %s: %s is not a build cache (an image index)", from, img.Descriptor.Digest)
			}
			idx, err := c.l.ReadIndex(img.Descriptor)
			if err != nil {
				return fmt.Errorf("--cache-from %s: %w", from, err)
			}
			for _, m := range idx.Manifests {
				k := digest.Digest(m.Annotations[AnnotationCacheKey])
				if k.Validate() != nil {
					continue
				}
				if _, ok := c.names[cacheRef(k)]; ok {
					continue
				}
				m.Annotations = nil
				c.names[cacheRef(k)] = m
				c.pending[cacheRef(k)] = m
			}
		}
	}
	return c.flush()
}

// exportTo writes an image index of this build's step images, each
// annotated with its key, to every destination.
func (c *cache) exportTo(ctx context.Context, tos []string, reg []remote.Option) error {
	if len(tos) == 0 {
		return nil
	}
	var ms []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, k := range c.used {
		if seen[k] {
			continue
		}
		seen[k] = true
		d := c.names[cacheRef(k)]
		d.Annotations = map[string]string{AnnotationCacheKey: k.String()}
		ms = append(ms, d)
	}
	idx := ocispec.Index{Manifests: ms, MediaType: ocispec.MediaTypeImageIndex}
	idx.SchemaVersion = 2
	d, err := c.l.PutJSON(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		return err
	}
	// Named while it is copied, so that gc keeps it meanwhile.
	tmp := fmt.Sprintf("export-%d", time.Now().UnixNano())
	if err := c.l.Tag(d, tmp); err != nil {
		return err
	}
	defer func() { _ = c.l.Untag(tmp) }()
	for _, to := range tos {
		dst, err := transport.ParseDestination(to)
		if err != nil {
			return fmt.Errorf("--cache-to %s: %w", to, err)
		}
		src, err := transport.ParseSource("oci:" + c.dir + ":" + tmp)
		if err != nil {
			return err
		}
		if _, err := transport.Copy(ctx, src, dst, transport.CopyOptions{Options: transport.Options{Copy: layout.CopyOptions{AllPlatforms: true}, Registry: reg}}); err != nil {
			return fmt.Errorf("--cache-to %s: %w", to, err)
		}
	}
	return nil
}
