package remote

import (
	"context"
	"errors"
	"fmt"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/errdef"
)

// layoutStore is a layout seen as oras-go content storage. Reads are
// verified by the blob store; writes go through a blob writer that checks
// digest and size before the blob becomes visible.
type layoutStore struct {
	l *layout.Layout
	o *options
}

// Fetch opens a verified reader of a blob.
func (s *layoutStore) Fetch(_ context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	r, err := s.l.Blobs().Open(d.Digest, d.Size)
	if err != nil {
		if errors.Is(err, blob.ErrNotFound) {
			return nil, fmt.Errorf("%w: %v", errdef.ErrNotFound, err)
		}
		return nil, err
	}
	return &progressReader{r: r, c: r, d: d, o: s.o}, nil
}

// Push stores a blob, verified against expected.
func (s *layoutStore) Push(ctx context.Context, expected ocispec.Descriptor, r io.Reader) error {
	if err := checkDeclared(expected); err != nil {
		return err
	}
	if s.o.inflight != nil {
		unlock := s.o.inflight.lock(s.l.Dir() + "\x00" + expected.Digest.String())
		defer unlock()
		if s.l.Blobs().Has(expected.Digest, expected.Size) {
			// Another pull of the same client stored it meanwhile.
			s.o.markFound(expected)
			return nil
		}
	}
	if lb, ok := r.(*lazyBlob); ok {
		return s.pushResumable(ctx, expected, lb)
	}
	if err := s.l.Hold(); err != nil {
		return err
	}
	w, err := s.l.Blobs().NewWriter(blob.WithExpected(expected.Digest, expected.Size))
	if err != nil {
		return err
	}
	defer w.Close()
	pr := &progressReader{r: ctxio.Reader(ctx, r), d: expected, o: s.o}
	if _, err := w.ReadFrom(pr); err != nil {
		return fmt.Errorf("download %s %s: %w", kind(expected), expected.Digest, err)
	}
	if _, _, err := w.Commit(); err != nil {
		return fmt.Errorf("download %s %s: %w", kind(expected), expected.Digest, err)
	}
	return nil
}

// Exists reports whether the blob is present; for a manifest or index,
// whether everything it references is present too, because oras-go skips
// the whole graph below a node that exists.
func (s *layoutStore) Exists(_ context.Context, d ocispec.Descriptor) (bool, error) {
	if !s.l.Blobs().Has(d.Digest, d.Size) {
		return false, nil
	}
	if !layout.IsIndex(d.MediaType) && !layout.IsManifest(d.MediaType) {
		return true, nil
	}
	return missingBlob(s.l, d) == nil, nil
}

// kind names a blob for messages.
func kind(d ocispec.Descriptor) string {
	switch {
	case layout.IsIndex(d.MediaType):
		return "index"
	case layout.IsManifest(d.MediaType):
		return "manifest"
	case layout.IsConfig(d.MediaType):
		return "config"
	case layout.IsLayer(d.MediaType):
		return "layer"
	}
	return "blob"
}

// progressReader reports the bytes of one blob as they move.
type progressReader struct {
	r io.Reader
	c io.Closer
	d ocispec.Descriptor
	o *options
	n int64
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 && p.o.progress != nil {
		p.n += int64(n)
		p.o.report(Progress{Descriptor: p.d, State: StateCopying, Bytes: p.n})
	}
	return n, err
}

func (p *progressReader) Close() error {
	if p.c != nil {
		return p.c.Close()
	}
	return nil
}
