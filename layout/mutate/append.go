package mutate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// Source is one layer Append adds: a tarball or a directory.
type Source struct {
	// Path is a tarball (plain, gzip, zstd, xz or bzip2, sniffed from its
	// first bytes) or a directory, whose files become the layer.
	Path string
	// Reader, when set, is read instead of opening Path (a tarball on
	// stdin); Path then only names it.
	Reader io.Reader
	// CreatedBy is the layer's history created_by; empty means
	// "strata append PATH".
	CreatedBy string
}

// Base names the image another was built on, for the
// org.opencontainers.image.base.* annotations.
type Base struct {
	// Name is its name (base.name); empty leaves base.name out.
	Name string
	// Descriptor is its manifest or index (base.digest).
	Descriptor ocispec.Descriptor
}

// AppendOptions say how Append makes its layers and where they go.
type AppendOptions struct {
	// Platforms selects the images of an index that get the layers; none
	// means every image.
	Platforms []ocispec.Platform
	// Compression is what plain, xz and bzip2 tarballs and directories are
	// compressed with (default gzip); gzip and zstd tarballs are stored as
	// they are unless Recompress.
	Compression layout.Compression
	// Level is the compression level (0: the format's default).
	Level int
	// Recompress compresses gzip and zstd tarballs again with
	// Compression.
	Recompress bool
	// Dir says how directories become layers (owners, mtimes).
	Dir DirOptions
	// Created is the creation time of the history entries and the
	// config; nil means now.
	Created *time.Time
	// Author and Comment go into each history entry.
	Author, Comment string
	// Base, when set, is recorded as each new manifest's base image
	// (org.opencontainers.image.base.name and .digest).
	Base *Base
	// Progress, when set, wraps the stream read for each source (its
	// size, -1 when unknown), to show progress.
	Progress func(src Source, size int64, r io.Reader) io.Reader
}

// AppendResult is what Append made.
type AppendResult struct {
	*Result
	// Layers are the layers added, in order, as stored.
	Layers []layout.Layer
}

// Append stores each source as a layer, then adds the layers, each with a
// history entry, to every image root reaches that opts select, and
// rewrites the indexes on the way. A source is stored once whatever the
// number of platforms. Nothing is named; see Rewrite.
func Append(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, srcs []Source, opts AppendOptions) (*AppendResult, error) {
	if len(srcs) == 0 {
		return nil, errors.New("append: no layer to add")
	}
	if opts.Compression == "" {
		opts.Compression = layout.CompressionGzip
	}
	if opts.Level == 0 {
		opts.Level = compression.DefaultLevel
	}
	if _, err := layout.LayerMediaType(opts.Compression); err != nil {
		return nil, err
	}
	for _, s := range srcs {
		if s.Reader != nil {
			continue
		}
		if _, err := os.Stat(s.Path); err != nil {
			return nil, fmt.Errorf("append: %w", err)
		}
	}
	created := time.Now().UTC()
	if opts.Created != nil {
		created = opts.Created.UTC()
	}
	layers := make([]layout.Layer, 0, len(srcs))
	for _, s := range srcs {
		ly, err := putSource(ctx, l, s, opts)
		if err != nil {
			return nil, fmt.Errorf("append %s: %w", s.Path, err)
		}
		layers = append(layers, ly)
	}
	res, err := Rewrite(ctx, l, root, RewriteOptions{Platforms: opts.Platforms}, func(_ context.Context, img *layout.Image, _ ocispec.Platform) (ocispec.Descriptor, error) {
		cfg, err := layout.ParseConfig(img.ConfigRaw)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
		}
		descs := append([]ocispec.Descriptor(nil), img.Manifest.Layers...)
		for i, ly := range layers {
			if err := cfg.AppendLayer(ly.DiffID); err != nil {
				return ocispec.Descriptor{}, err
			}
			by := srcs[i].CreatedBy
			if by == "" {
				by = "strata append " + srcs[i].Path
			}
			if err := cfg.AppendHistory(ocispec.History{Created: &created, CreatedBy: by, Author: opts.Author, Comment: opts.Comment}); err != nil {
				return ocispec.Descriptor{}, err
			}
			d := ly.Descriptor
			if d.MediaType, err = LayerMediaType(manifestType(img), d.MediaType); err != nil {
				return ocispec.Descriptor{}, err
			}
			descs = append(descs, d)
		}
		if err := cfg.Set("created", created); err != nil {
			return ocispec.Descriptor{}, err
		}
		b, err := cfg.Bytes()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		return PutImage(l, img, b, descs, baseAnnotations(img.Manifest.Annotations, opts.Base))
	})
	if err != nil {
		return nil, err
	}
	return &AppendResult{Result: res, Layers: layers}, nil
}

// putSource stores one source as a layer blob.
func putSource(ctx context.Context, l *layout.Layout, s Source, opts AppendOptions) (layout.Layer, error) {
	lopts := []layout.LayerOption{layout.WithCompression(opts.Compression), layout.WithLevel(opts.Level)}
	progress := func(size int64, r io.Reader) io.Reader {
		if opts.Progress == nil {
			return r
		}
		return opts.Progress(s, size, r)
	}
	if s.Reader != nil {
		return putTarball(ctx, l, progress(-1, s.Reader), opts, lopts)
	}
	fi, err := os.Stat(s.Path)
	if err != nil {
		return layout.Layer{}, err
	}
	if !fi.IsDir() {
		f, err := os.Open(s.Path)
		if err != nil {
			return layout.Layer{}, err
		}
		defer f.Close()
		size := int64(-1)
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
		return putTarball(ctx, l, progress(size, f), opts, lopts)
	}
	// A directory: its tar is written on a goroutine while PutLayer
	// compresses and hashes it.
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := WriteDirTar(ctx, pw, s.Path, opts.Dir)
		pw.CloseWithError(err)
		done <- err
	}()
	ly, err := l.PutLayer(ctx, progress(-1, pr), append(lopts, layout.WithRecompress())...)
	pr.CloseWithError(errors.New("layer store stopped reading"))
	werr := <-done
	switch {
	case err != nil: // holds the tar writer's error when that came first
		return layout.Layer{}, err
	case werr != nil:
		return layout.Layer{}, werr
	}
	return ly, nil
}

func putTarball(ctx context.Context, l *layout.Layout, r io.Reader, opts AppendOptions, lopts []layout.LayerOption) (layout.Layer, error) {
	lopts = append(lopts, layout.WithTarCheck())
	if opts.Recompress {
		lopts = append(lopts, layout.WithRecompress())
	}
	return l.PutLayer(ctx, r, lopts...)
}

// baseAnnotations returns annotations with base's name and digest set,
// or annotations itself when base is nil.
func baseAnnotations(annotations map[string]string, base *Base) map[string]string {
	if base == nil {
		return annotations
	}
	edits := []Setting{{Key: ocispec.AnnotationBaseImageDigest, Value: base.Descriptor.Digest.String()}}
	if base.Name != "" {
		edits = append(edits, Setting{Key: ocispec.AnnotationBaseImageName, Value: base.Name})
	} else {
		edits = append(edits, Setting{Key: ocispec.AnnotationBaseImageName, Remove: true})
	}
	return EditAnnotations(annotations, edits)
}
