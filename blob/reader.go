package blob

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/ctxio"
	"golang.org/x/sys/unix"
)

// Reader reads one blob and verifies it: at the end of the content it
// returns an error wrapping ErrDigestMismatch or ErrSizeMismatch instead of
// io.EOF when the bytes do not match. It never reads past the expected size,
// so a blob that grew is an error, not a hang.
type Reader struct {
	f    *os.File
	d    digest.Digest
	size int64
	n    int64
	h    hash.Hash
	err  error
}

// Open returns a verified reader for blob d. When size >= 0 the blob must
// have exactly that size; otherwise the size of the file when it is opened
// is taken as the expected size.
func (s *Store) Open(d digest.Digest, size int64) (*Reader, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	// O_NONBLOCK: opening a FIFO planted as a blob must not hang; it is
	// refused below as not a regular file.
	f, err := s.OpenFile(d, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		if errors.Is(err, ErrSymlink) {
			return nil, fmt.Errorf("blob %s: %w", d, err)
		}
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("blob %s: not a regular file", d)
	}
	if size < 0 {
		size = fi.Size()
	} else if fi.Size() != size {
		f.Close()
		return nil, fmt.Errorf("blob %s: %w: expected %d bytes, found %d", d, ErrSizeMismatch, size, fi.Size())
	}
	return &Reader{f: f, d: d, size: size, h: d.Algorithm().Hash()}, nil
}

// Size is the blob's expected size.
func (r *Reader) Size() int64 { return r.size }

// Digest is the blob's expected digest.
func (r *Reader) Digest() digest.Digest { return r.d }

// Read reads verified content. See Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.n == r.size {
		// Probe one byte past the end so that a blob that grew is caught.
		var one [1]byte
		if m, _ := r.f.Read(one[:]); m > 0 {
			r.err = fmt.Errorf("blob %s: %w: longer than the expected %d bytes", r.d, ErrSizeMismatch, r.size)
			return 0, r.err
		}
		if got := digest.NewDigest(r.d.Algorithm(), r.h); got != r.d {
			r.err = fmt.Errorf("blob %s: %w: content hashes to %s", r.d, ErrDigestMismatch, got)
			return 0, r.err
		}
		r.err = io.EOF
		return 0, io.EOF
	}
	if rem := r.size - r.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if err == io.EOF {
		if r.n < r.size {
			r.err = fmt.Errorf("blob %s: %w: expected %d bytes, got %d", r.d, ErrSizeMismatch, r.size, r.n)
			return n, r.err
		}
		err = nil
	}
	if err != nil {
		r.err = fmt.Errorf("read blob %s: %w", r.d, err)
		return n, r.err
	}
	return n, nil
}

// WriteTo streams the verified content to w.
func (r *Reader) WriteTo(w io.Writer) (int64, error) { return copyChunks(w, r) }

// copyChunks copies src to dst in 1 MiB reads and writes: neither side's
// ReadFrom or WriteTo is used, so each side sees the same large chunks.
func copyChunks(dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			m, werr := dst.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// Close releases the file.
func (r *Reader) Close() error { return r.f.Close() }

// File is the underlying open file, for callers that copy it by other means
// (reflink, sendfile); such callers must verify the content themselves.
func (r *Reader) File() *os.File { return r.f }

// ErrTooLarge means a blob read with ReadAll exceeds the given limit.
var ErrTooLarge = errors.New("too large")

// ReadAll reads a small blob (a manifest, index or config) whole and
// verifies it. Blobs larger than max bytes are refused with ErrTooLarge.
func (s *Store) ReadAll(d digest.Digest, size int64, max int64) ([]byte, error) {
	r, err := s.Open(d, size)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if r.size > max {
		return nil, fmt.Errorf("blob %s: %w: %d bytes, limit %d", d, ErrTooLarge, r.size, max)
	}
	b := make([]byte, 0, r.size)
	buf := make([]byte, 32*1024)
	for {
		n, err := r.Read(buf)
		b = append(b, buf[:n]...)
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// Verify reads blob d whole and checks its digest and size, whatever its
// seal says; a blob that passes is sealed, one that fails loses its seal.
// Cancelling ctx stops the read with ctx's error and leaves the seal as
// it was.
func (s *Store) Verify(ctx context.Context, d digest.Digest, size int64) error {
	r, err := s.Open(d, size)
	if err != nil {
		return err
	}
	defer r.Close()
	before := fileIdentity(r.f)
	if _, err = r.WriteTo(ctxio.Writer(ctx, io.Discard)); err != nil {
		if ctx.Err() == nil {
			s.unseal(d)
		}
		return err
	}
	s.sealFile(d, r.f, before)
	return nil
}
