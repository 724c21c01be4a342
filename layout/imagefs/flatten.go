package imagefs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/snapshot/layer/merge"
)

// FlattenOptions say which images Flatten changes and how it writes
// their layer.
type FlattenOptions struct {
	// Platforms selects the images of an index to flatten; none means
	// every one (see mutate.RewriteOptions).
	Platforms []ocispec.Platform
	// Compression of the new layer (gzip when empty) and its level: 0
	// (or compression.DefaultLevel) is FlattenGzipLevel for gzip and the
	// format's default for zstd.
	Compression layout.Compression
	Level       int
	// TempDir holds the spool (see ExportOptions) and the layers'
	// uncompressed tars (merge.Options.CacheDir); the layout's state
	// directory when empty (FlattenImage: the system's temporary
	// directory for the spool, and no cache).
	TempDir string
}

// FlattenGzipLevel is flatten's gzip level unless one is asked for:
// gzip's fastest. Compressing the whole merged file system is most of
// flatten's work, and the default level (6) takes more than twice the
// CPU for a layer about a tenth smaller (50.7 MB against 55.9 MB for
// Debian's minbase).
const FlattenGzipLevel = 1

// Base annotations name the image an image was built on; a flattened
// image has no base layers left, so they are dropped.
const (
	annotationBaseDigest = "org.opencontainers.image.base.digest"
	annotationBaseName   = "org.opencontainers.image.base.name"
)

// Flatten replaces every image root reaches (each platform of an index,
// nested ones too, or the platforms o selects) by a one-layer image of
// its merged file system, and rewrites the indexes on the way (see
// mutate.Rewrite). It is a mutate.Change: nothing is named, and the
// caller names the result or takes back the blobs on failure.
func Flatten(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, o FlattenOptions) (*mutate.Result, error) {
	if o.TempDir == "" {
		// The layout's own file system rather than a /tmp that may be
		// memory.
		if d, err := l.MakeStateDir(); err == nil {
			o.TempDir = d
		}
	}
	return mutate.Rewrite(ctx, l, root, mutate.RewriteOptions{Platforms: o.Platforms},
		func(ctx context.Context, img *layout.Image, _ ocispec.Platform) (ocispec.Descriptor, error) {
			return FlattenImage(ctx, l, img, o)
		})
}

// FlattenImage stores the one-layer image of img's merged file system and
// returns its manifest's descriptor, as crane flatten makes it: the
// config kept but for rootfs (the new layer's diffID) and history (one
// entry, created_by "strata flatten <old manifest digest>", the old
// history as JSON in its comment), the manifest's media types and
// annotations kept (but the base image's, which no longer holds). The
// layer is streamed from the old layers into the blob store, compressed
// and hashed on the way; it is the bytes Export writes.
func FlattenImage(ctx context.Context, l *layout.Layout, img *layout.Image, o FlattenOptions) (ocispec.Descriptor, error) {
	if o.Compression == "" {
		o.Compression = layout.CompressionGzip
	}
	// The layer's media type, in the manifest's family: known (or
	// refused, zstd in a Docker image) before any work.
	lt, err := layout.LayerMediaType(o.Compression)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	mt := img.Manifest.MediaType
	if mt == "" {
		mt = img.Descriptor.MediaType
	}
	if lt, err = mutate.LayerMediaType(mt, lt); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	// The layers' tars are kept, uncompressed, beside the spool while
	// their headers are read, so that each is decompressed once.
	t, err := Read(ctx, l, img, merge.Options{CacheDir: o.TempDir})
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer t.Close()
	ly, err := putTree(ctx, l, t, o)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	cfg, err := flatConfig(img, ly)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	ld := ly.Descriptor
	ld.MediaType = lt
	var ann map[string]string
	for k, v := range img.Manifest.Annotations {
		if k == annotationBaseDigest || k == annotationBaseName {
			continue
		}
		if ann == nil {
			ann = map[string]string{}
		}
		ann[k] = v
	}
	return mutate.PutImage(l, img, cfg, []ocispec.Descriptor{ld}, ann)
}

// errAbandoned stops a tree's writer whose reader gave up.
var errAbandoned = errors.New("layer abandoned")

// putTree writes t as one layer into l.
func putTree(ctx context.Context, l *layout.Layout, t *merge.Tree, o FlattenOptions) (layout.Layer, error) {
	k := o.Compression
	level := o.Level
	if level == 0 || level == compression.DefaultLevel {
		level = compression.DefaultLevel
		if k == layout.CompressionGzip {
			level = FlattenGzipLevel
		}
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := t.WriteTar(ctx, pw, merge.WriteOptions{TempDir: o.TempDir})
		pw.CloseWithError(err)
		done <- err
	}()
	ly, err := l.PutLayer(ctx, pr, layout.WithCompression(k), layout.WithLevel(level))
	pr.CloseWithError(errAbandoned)
	if werr := <-done; werr != nil && !errors.Is(werr, errAbandoned) {
		// The writer's failure is the cause of the reader's.
		return layout.Layer{}, werr
	}
	return ly, err
}

// flatConfig is img's config with the flattened layer's rootfs and
// history.
func flatConfig(img *layout.Image, ly layout.Layer) ([]byte, error) {
	cfg, err := layout.ParseConfig(img.ConfigRaw)
	if err != nil {
		return nil, err
	}
	var old json.RawMessage
	if _, err := cfg.Get("history", &old); err != nil {
		return nil, err
	}
	comment := ""
	if len(old) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, old); err != nil {
			return nil, err
		}
		comment = b.String()
	}
	var created *time.Time
	if _, err := cfg.Get("created", &created); err != nil {
		return nil, err
	}
	h := ocispec.History{Created: created, CreatedBy: "strata flatten " + img.Descriptor.Digest.String(), Comment: comment}
	if err := cfg.Set("history", []ocispec.History{h}); err != nil {
		return nil, err
	}
	if err := cfg.Set("rootfs", ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{ly.DiffID}}); err != nil {
		return nil, err
	}
	return cfg.Bytes()
}
