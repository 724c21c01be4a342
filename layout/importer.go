package layout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions describes the image Import makes around a rootfs tarball.
// The zero value imports for the host platform, created now, gzip layer.
type ImportOptions struct {
	// Platform is the image's os/arch/variant; zero means the host.
	Platform ocispec.Platform
	// Created is the image's creation time; nil means now. A fixed time
	// (see ParseCreated) makes the same input give the same digest.
	Created *time.Time
	// Author is the config's and history entry's author.
	Author string
	// Comment is the history entry's comment (docker import -m).
	Comment string
	// CreatedBy is the history entry's created_by.
	CreatedBy string
	// Edit changes the runtime config before the layer is read; Dockerfile
	// --change instructions are applied through it. An error here stops
	// the import before any input is read.
	Edit func(*Config) error
	// Layer options for PutLayer: compression, level. Import always checks
	// that the input is a tar archive.
	Layer []LayerOption
	// Ref names the image in index.json; empty adds it untagged.
	Ref string
}

// ImportResult is what Import stored.
type ImportResult struct {
	// Manifest is the image manifest's descriptor, with its platform.
	Manifest ocispec.Descriptor
	Config   ocispec.Descriptor
	Layer    Layer
}

// Import makes a one-layer image from a rootfs tarball, as docker import
// does: the tar (plain, gzip, zstd, xz or bzip2) becomes the layer, gzip
// and zstd stored as they are; the config is empty but for the platform,
// the creation time, the history entry and opts.Edit's changes. Input that
// is not a tar archive is refused and nothing is written.
//
// The image is named opts.Ref in index.json, or added untagged. If Import
// fails after storing blobs, index.json is unchanged and gc (or Undo)
// removes them. Cancelling ctx stops the read of r within a megabyte
// (a read blocked in r is not interrupted: close r to end it); once the
// layer is stored, a cancelled Import names nothing.
func (l *Layout) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportResult, error) {
	cfg, created, err := importConfig(opts)
	if err != nil {
		return ImportResult{}, err
	}
	ly, err := l.PutLayer(ctx, r, append(append([]LayerOption{}, opts.Layer...), WithTarCheck())...)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import into %s: %w", l.dir, err)
	}
	if err := cfg.AppendLayer(ly.DiffID); err != nil {
		return ImportResult{}, err
	}
	if err := cfg.AppendHistory(ocispec.History{
		Created:   &created,
		CreatedBy: opts.CreatedBy,
		Author:    opts.Author,
		Comment:   opts.Comment,
	}); err != nil {
		return ImportResult{}, err
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, nil)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import into %s: %w", l.dir, err)
	}
	img, err := l.ReadImage(md)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import into %s: %w", l.dir, err)
	}
	// The last point to stop at: naming the image finishes the import.
	if err := ctx.Err(); err != nil {
		return ImportResult{}, err
	}
	if opts.Ref != "" {
		err = l.Tag(md, opts.Ref)
	} else {
		err = l.AddUntagged(md)
	}
	if err != nil {
		return ImportResult{}, fmt.Errorf("import into %s: %w", l.dir, err)
	}
	return ImportResult{Manifest: md, Config: img.Manifest.Config, Layer: ly}, nil
}

// importConfig checks opts.Ref and makes the config Import starts from:
// platform, creation time, author and opts.Edit's changes. Nothing is
// read or written yet.
func importConfig(opts ImportOptions) (*Config, time.Time, error) {
	if opts.Ref != "" {
		if err := ValidateRef(opts.Ref); err != nil {
			return nil, time.Time{}, err
		}
		if _, ok := IsDigestRef(opts.Ref); ok {
			return nil, time.Time{}, fmt.Errorf("%w %q: an imported image is named by a tag, not a digest", ErrInvalidRef, opts.Ref)
		}
	}
	p := opts.Platform
	if p.OS == "" || p.Architecture == "" {
		host, err := ParsePlatform("")
		if err != nil {
			return nil, time.Time{}, err
		}
		p = host
	}
	created := time.Now().UTC()
	if opts.Created != nil {
		created = opts.Created.UTC()
	}
	cfg := NewConfig(p)
	if err := cfg.Set("created", created); err != nil {
		return nil, time.Time{}, err
	}
	if opts.Author != "" {
		if err := cfg.Set("author", opts.Author); err != nil {
			return nil, time.Time{}, err
		}
	}
	if opts.Edit != nil {
		if err := opts.Edit(cfg); err != nil {
			return nil, time.Time{}, err
		}
	}
	return cfg, created, nil
}

// ErrInvalidTime means a creation time is neither RFC 3339 nor unix
// seconds.
var ErrInvalidTime = errors.New("invalid time")

// ParseCreated reads a creation time given as RFC 3339
// (2024-01-02T03:04:05Z) or as unix seconds, as SOURCE_DATE_EPOCH is.
func ParseCreated(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: empty", ErrInvalidTime)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 253402300799 { // 9999-12-31T23:59:59Z
			return time.Time{}, fmt.Errorf("%w %q: out of range", ErrInvalidTime, s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w %q: use RFC 3339 (2024-01-02T03:04:05Z) or unix seconds", ErrInvalidTime, s)
	}
	return t.UTC(), nil
}
