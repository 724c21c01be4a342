package layout

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
)

// ErrNotTar means a layer's (decompressed) content is not a tar archive.
var ErrNotTar = errors.New("not a tar archive")

// MaxZstdWindow is the largest zstd window strata decompresses (128 MiB,
// the zstd tool's default limit): a layer compressed with a larger one
// (zstd --long=28 and up) would need that much memory to read, and is
// refused wherever strata decompresses it (import, load, unpack,
// conversion) with an error wrapping ErrZstdWindow.
const MaxZstdWindow = compression.MaxZstdWindow

// ErrZstdWindow means a zstd stream asks for a window over MaxZstdWindow.
var ErrZstdWindow = compression.ErrWindowTooLarge

// Compression is a layer compression format. It aliases the internal
// compression package's kind so that programs outside this module can
// name formats too.
type Compression = compression.Kind

// Layer compression formats. Gzip, Zstd and None can be written; xz and
// bzip2 are read only.
const (
	CompressionNone  = compression.None
	CompressionGzip  = compression.Gzip
	CompressionZstd  = compression.Zstd
	CompressionXz    = compression.Xz
	CompressionBzip2 = compression.Bzip2
)

// Layer is a layer blob written into a layout.
type Layer struct {
	// Descriptor names the stored blob, with an OCI layer media type that
	// says how it is compressed.
	Descriptor ocispec.Descriptor
	// DiffID is the digest of the uncompressed tar, as listed in a
	// config's rootfs.diff_ids.
	DiffID digest.Digest
	// UncompressedSize is the length of the uncompressed tar.
	UncompressedSize int64
	// Input is the compression the input stream had.
	Input Compression
	// Recompressed says whether the blob was (re)compressed by strata
	// rather than stored as the input bytes.
	Recompressed bool
}

type layerOptions struct {
	out      compression.Kind
	level    int
	force    bool
	checkTar tarCheck
}

// LayerOption configures PutLayer.
type LayerOption func(*layerOptions)

// WithCompression sets the compression written for input that is not
// already gzip or zstd (and for all input with WithRecompress). The default
// is gzip, which every loader and registry accepts.
func WithCompression(k Compression) LayerOption {
	return func(o *layerOptions) { o.out = k }
}

// WithLevel sets the compression level (compression.DefaultLevel for the
// format's default).
func WithLevel(level int) LayerOption {
	return func(o *layerOptions) { o.level = level }
}

// WithRecompress makes PutLayer decompress gzip and zstd input and
// compress it again with the chosen compression, instead of storing the
// input bytes as they are. Converting a layer to another compression
// needs it.
func WithRecompress() LayerOption {
	return func(o *layerOptions) { o.force = true }
}

// WithTarCheck makes PutLayer read the tar headers of the uncompressed
// stream as it passes and refuse input that is not a tar archive, so that
// a wrong file given to import never becomes a layer. Nothing is stored
// when the check fails.
func WithTarCheck() LayerOption {
	return func(o *layerOptions) { o.checkTar = readTar }
}

// LayerMediaType is the OCI layer media type for a blob compressed with k.
func LayerMediaType(k Compression) (string, error) {
	switch k {
	case compression.Gzip:
		return ocispec.MediaTypeImageLayerGzip, nil
	case compression.Zstd:
		return ocispec.MediaTypeImageLayerZstd, nil
	case compression.None:
		return ocispec.MediaTypeImageLayer, nil
	}
	return "", fmt.Errorf("%w %q as layer compression", compression.ErrUnsupported, k)
}

// PutLayer streams a layer tar (plain, gzip, zstd, xz or bzip2, sniffed
// from its first bytes) into the layout's blob store in one pass and
// returns the stored blob and the tar's diffID.
//
// gzip and zstd input is stored byte for byte, as docker import does, so
// that the digest a registry or peer already knows is kept; the diffID is
// computed from a decompressed copy of the same stream. Other input is
// compressed with WithCompression's choice while both digests are
// computed. The layer is never held in memory, and on any error the
// partial blob is removed: either the whole layer is stored or nothing is.
//
// The blob is not referenced by index.json; the caller names it through a
// manifest (see PutImage). PutLayer takes the layout's gc hold first.
// Cancelling ctx stops it within a megabyte of input, storing nothing; a
// read blocked in r is not interrupted (close r to end it).
func (l *Layout) PutLayer(ctx context.Context, r io.Reader, opts ...LayerOption) (Layer, error) {
	o := layerOptions{out: compression.Gzip, level: compression.DefaultLevel}
	for _, opt := range opts {
		opt(&o)
	}
	if _, err := LayerMediaType(o.out); err != nil {
		return Layer{}, err
	}
	if err := l.Hold(); err != nil {
		return Layer{}, err
	}
	in, src, err := compression.Sniff(ctxio.Reader(ctx, r))
	if err != nil {
		return Layer{}, fmt.Errorf("read layer: %w", err)
	}
	w, err := l.blobs.NewWriter()
	if err != nil {
		return Layer{}, fmt.Errorf("store layer: %w", err)
	}
	defer w.Close()

	var ly Layer
	if (in == compression.Gzip || in == compression.Zstd) && !o.force {
		ly, err = storeAsIs(w, src, in, o.checkTar)
	} else {
		ly, err = recompress(w, src, in, o)
	}
	if err != nil {
		return Layer{}, err
	}
	d, size, err := w.Commit()
	if err != nil {
		return Layer{}, fmt.Errorf("store layer: %w", err)
	}
	ly.Descriptor.Digest = d
	ly.Descriptor.Size = size
	ly.Input = in
	return ly, nil
}

// storeAsIs copies compressed input into w while a second goroutine-fed
// reader decompresses the same bytes to compute the diffID, so reading,
// hashing and writing the blob overlap with decompression.
func storeAsIs(w *blob.Writer, src io.Reader, in compression.Kind, checkTar tarCheck) (Layer, error) {
	mt, err := LayerMediaType(in)
	if err != nil {
		return Layer{}, err
	}
	p := chunkpipe.New(src, w, chunkpipe.Options{ChunkSize: 256 << 10, Chunks: 8, ReadContext: "read layer", WriteContext: "store layer"})
	defer p.Stop()
	zr, err := compression.NewReader(p, in)
	if err != nil {
		return Layer{}, fmt.Errorf("read %s: %w", describeInput(in), err)
	}
	h := sha256.New()
	n, err := consumeTar(io.TeeReader(zr, h), checkTar)
	zr.Close()
	if err != nil {
		// A read error from the source or the blob store is the real
		// cause; report it rather than what it did to decompression.
		if perr := p.ReadErr(); perr != nil {
			return Layer{}, perr
		}
		return Layer{}, fmt.Errorf("read %s: %w", describeInput(in), err)
	}
	// Bytes after the end of the compressed stream are stored too: the
	// blob is the input, unchanged.
	if _, err := io.Copy(io.Discard, p); err != nil {
		return Layer{}, err
	}
	if err := p.Wait(); err != nil {
		return Layer{}, err
	}
	return Layer{
		Descriptor:       ocispec.Descriptor{MediaType: mt},
		DiffID:           digest.NewDigest(digest.SHA256, h),
		UncompressedSize: n,
	}, nil
}

// recompress decompresses input (if compressed) and compresses it with
// o.out into w; the uncompressed stream is hashed on the way.
func recompress(w *blob.Writer, src io.Reader, in compression.Kind, o layerOptions) (Layer, error) {
	mt, err := LayerMediaType(o.out)
	if err != nil {
		return Layer{}, err
	}
	zr, err := compression.NewReader(src, in)
	if err != nil {
		return Layer{}, fmt.Errorf("read %s: %w", describeInput(in), err)
	}
	defer zr.Close()
	zw, err := compression.NewWriter(w, o.out, o.level)
	if err != nil {
		return Layer{}, fmt.Errorf("compress layer: %w", err)
	}
	h := sha256.New()
	sink := &failWriter{w: io.MultiWriter(h, zw)}
	n, err := consumeTar(io.TeeReader(zr, sink), o.checkTar)
	if err != nil {
		zw.Close()
		if sink.err != nil {
			return Layer{}, fmt.Errorf("compress layer: %w", sink.err)
		}
		return Layer{}, fmt.Errorf("read %s: %w", describeInput(in), err)
	}
	if err := zw.Close(); err != nil {
		return Layer{}, fmt.Errorf("compress layer: %w", err)
	}
	return Layer{
		Descriptor:       ocispec.Descriptor{MediaType: mt},
		DiffID:           digest.NewDigest(digest.SHA256, h),
		UncompressedSize: n,
		Recompressed:     true,
	}, nil
}

func describeInput(k compression.Kind) string {
	if k == compression.None {
		return "layer"
	}
	return string(k) + " layer"
}

// failWriter remembers the first write error, so that a failure of the
// compressor or the disk is not reported as a broken input stream.
type failWriter struct {
	w   io.Writer
	err error
}

func (f *failWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil && f.err == nil {
		f.err = err
	}
	return n, err
}

// tarCheck says whether consumeTar reads its input as a tar archive.
type tarCheck bool

const (
	skipTar tarCheck = false // count the bytes only
	readTar tarCheck = true  // refuse what is not a tar archive
)

// consumeTar reads r to its end and returns its length. With readTar, r
// is read through a tar reader, so that input which is not a tar archive
// fails; bytes after the end-of-archive marker are still read, since they
// are part of the layer's diffID.
func consumeTar(r io.Reader, check tarCheck) (int64, error) {
	cr := &countReader{r: r}
	if check == skipTar {
		_, err := io.Copy(io.Discard, cr)
		return cr.n, err
	}
	tr := tar.NewReader(cr)
	entries := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if cr.err != nil {
				return cr.n, cr.err
			}
			if entries == 0 {
				return cr.n, fmt.Errorf("%w: %v", ErrNotTar, err)
			}
			return cr.n, fmt.Errorf("%w: entry %d: %v", ErrNotTar, entries+1, err)
		}
		entries++
	}
	if cr.err != nil {
		return cr.n, cr.err
	}
	if cr.n == 0 {
		return 0, fmt.Errorf("%w: input is empty", ErrNotTar)
	}
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return cr.n, err
	}
	return cr.n, nil
}

// countReader counts bytes and keeps the underlying reader's error, which
// archive/tar may replace with its own.
type countReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}
