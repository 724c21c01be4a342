// Package compression sniffs, decompresses and compresses layer streams.
// gzip uses klauspost/pgzip for compression (both cores) and
// klauspost/compress for decompression; zstd uses klauspost/compress; xz
// uses ulikunitz/xz; bzip2 is read with the standard library and never
// written (no loader accepts it as a layer).
package compression

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"runtime"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/ulikunitz/xz"
)

// Kind is a compression format.
type Kind string

// The formats strata reads; Gzip, Zstd and None are also written.
const (
	None  Kind = "none"
	Gzip  Kind = "gzip"
	Zstd  Kind = "zstd"
	Xz    Kind = "xz"
	Bzip2 Kind = "bzip2"
)

// ErrUnsupported means a compression format cannot be used where asked,
// such as bzip2 as an output.
var ErrUnsupported = errors.New("unsupported compression")

// MaxZstdWindow is the largest zstd window strata decompresses: the
// history a frame may refer back to, which the decoder must keep in
// memory. 128 MiB is the zstd tool's own default limit (it decompresses
// more only when given --long=N or --memory), so every stream zstd
// decompresses by default is accepted, up to level 22 --ultra and
// --long=27; one made with a larger window (--long=28 and up) is refused
// with ErrWindowTooLarge instead of costing up to 2 GiB of memory.
const MaxZstdWindow = 128 << 20

// ErrWindowTooLarge means a zstd stream asks for a window larger than
// MaxZstdWindow.
var ErrWindowTooLarge = errors.New("zstd window too large")

// ParseKind parses a --compression value for output.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case Gzip, Zstd, None:
		return Kind(s), nil
	case "uncompressed":
		return None, nil
	case Bzip2, Xz:
		return "", fmt.Errorf("%w %q as output: use gzip, zstd or none", ErrUnsupported, s)
	}
	return "", fmt.Errorf("%w %q: use gzip, zstd or none", ErrUnsupported, s)
}

// Detect names the compression of a stream from its first bytes.
func Detect(head []byte) Kind {
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return Zstd
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return Xz
	case bytes.HasPrefix(head, []byte{'B', 'Z', 'h'}):
		return Bzip2
	}
	return None
}

// Sniff peeks at r and returns its compression and a reader that still
// yields every byte of r.
func Sniff(r io.Reader) (Kind, io.Reader, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	head, err := br.Peek(8)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		return "", nil, err
	}
	return Detect(head), br, nil
}

// NewReader decompresses r, which is compressed with k. Close the result
// to release decoder resources; it does not close r. Every zstd stream
// strata reads is decoded here, with its window bounded by MaxZstdWindow.
func NewReader(r io.Reader, k Kind) (io.ReadCloser, error) {
	switch k {
	case None:
		return io.NopCloser(r), nil
	case Gzip:
		zr, err := kgzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdReadCloser{zr}, nil
	case Xz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.NopCloser(xr), nil
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupported, k)
}

// NewSniffingReader detects r's compression and decompresses it.
func NewSniffingReader(r io.Reader) (io.ReadCloser, Kind, error) {
	k, br, err := Sniff(r)
	if err != nil {
		return nil, "", err
	}
	rc, err := NewReader(br, k)
	return rc, k, err
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) {
	n, err := z.Decoder.Read(p)
	return n, windowErr(err)
}

func (z zstdReadCloser) WriteTo(w io.Writer) (int64, error) {
	n, err := z.Decoder.WriteTo(w)
	return n, windowErr(err)
}

// windowErr names a frame whose window is over the limit, which a
// one-goroutine stream decoder reports with either error (the second when
// it checks the window against its memory bound; strata sets none lower
// than the window's).
func windowErr(err error) error {
	if err != nil && (errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded)) {
		return fmt.Errorf("zstd: %w: a frame needs more than the %d MiB of history strata allows (it was compressed with a larger window, such as zstd --long=28 or more)",
			ErrWindowTooLarge, MaxZstdWindow>>20)
	}
	return err
}

func (z zstdReadCloser) Close() error { z.Decoder.Close(); return nil }

// DefaultLevel means the format's default compression level.
const DefaultLevel = -1000

// NewWriter compresses into w with k at level (DefaultLevel for the
// format's default). Close the result to flush it; it does not close w.
// gzip and zstd compress on all cores.
func NewWriter(w io.Writer, k Kind, level int) (io.WriteCloser, error) {
	switch k {
	case None:
		return nopWriteCloser{w}, nil
	case Gzip:
		if level == DefaultLevel {
			level = pgzip.DefaultCompression
		}
		zw, err := pgzip.NewWriterLevel(w, level)
		if err != nil {
			return nil, fmt.Errorf("gzip level %d: %w", level, err)
		}
		// Blocks of 1 MiB, one in flight per core: enough to keep both
		// cores busy while bounding memory.
		if err := zw.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		return zw, nil
	case Zstd:
		opts := []zstd.EOption{zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0))}
		if level != DefaultLevel {
			opts = append(opts, zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)))
		}
		zw, err := zstd.NewWriter(w, opts...)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zw, nil
	case Xz, Bzip2:
		return nil, fmt.Errorf("%w %q as output: use gzip, zstd or none", ErrUnsupported, k)
	}
	return nil, fmt.Errorf("%w %q", ErrUnsupported, k)
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
