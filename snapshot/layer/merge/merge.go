// Package merge computes the file system a stack of OCI layers makes,
// from the layers' tar streams, without extracting them: whiteouts and
// opaque directories applied, later entries winning, hardlinks kept
// across layers (a link whose target a later layer replaced or removed
// still gets the content it was made with), names resolved through
// symlinks inside the root as the extractor resolves them.
//
// Read reads every layer's headers once (data skipped, diffIDs checked)
// and keeps one small record per file: which layer entry holds its
// content. WriteTar then writes the merged tree as one tar, in tree order,
// reading the layers a second time and streaming each file's content from
// its layer: memory holds the file list, never a file's content (content
// that a layer holds ahead of its turn in the output is kept in a spool
// file). Compare finds what differs between two trees, hashing contents
// only where sizes match and the content comes from different entries.
//
// It knows nothing of layouts or stores: a Layer is a function that opens
// a blob.
package merge

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/snapshot/layer"
)

// Layer is one layer of a stack.
type Layer struct {
	// Open returns the layer's blob from its start: a tar, compressed
	// (gzip, zstd, xz, bzip2: sniffed) or not. It is called once for each
	// pass over the layer, and the stream is read to its end each time,
	// so that a verifying reader checks every byte. A layer with no Open
	// holds no content of its own (the changes of a bundle, see
	// ApplyChanges).
	Open func() (io.ReadCloser, error)
	// DiffID, when set, is checked against the uncompressed stream the
	// first time it is read (ErrDiffIDMismatch). Compare also takes two
	// entries of layers with the same DiffID as the same content.
	DiffID digest.Digest
	// Name names the layer in errors and in Compare's results (a blob
	// digest, say).
	Name string
}

// ErrDiffIDMismatch means a layer's uncompressed stream does not hash to
// its DiffID.
var ErrDiffIDMismatch = layer.ErrDiffIDMismatch

// Options tune Read.
type Options struct {
	// Removals records which layer removed each path that a layer
	// removed (see RemovedBy); Compare reports it for deletions.
	Removals bool
	// CacheDir, when set, is where Read keeps each compressed layer's
	// uncompressed tar (its size on disk, in an unlinked file) for WriteTar
	// and Walk to read instead of decompressing the layer again; the
	// tree's Close gives the space back.
	CacheDir string
}

// Tree is the merged file system of a stack of layers. Its methods are
// not for concurrent use (Compare reads both its trees).
type Tree struct {
	layers []Layer
	root   *node
	// count is the number of names, the root included.
	count int
	// removed maps removed paths to the layer that removed them (only
	// with Options.Removals).
	removed map[string]int
	// caches hold the layers' uncompressed tars (Options.CacheDir), by
	// layer; nil where a layer has none.
	caches []*layerCache
}

func newTree(layers []Layer, o Options) *Tree {
	t := &Tree{
		layers: layers,
		root:   &node{kids: map[string]*node{}, layer: -1, ino: &inode{typ: layer.TypeDir, mode: 0o755}},
		count:  1,
	}
	if o.Removals {
		t.removed = map[string]int{}
	}
	return t
}

// Layers returns the layers the tree was read from, base first (and the
// changes of ApplyChanges last).
func (t *Tree) Layers() []Layer { return t.layers }

// Len is the number of files of the tree, the root included.
func (t *Tree) Len() int { return t.count }

// RemovedBy says which layer (an index into Layers) last removed the path
// p (slash-separated, relative to the root) and ok whether any did; it
// needs Options.Removals.
func (t *Tree) RemovedBy(p string) (l int, ok bool) {
	l, ok = t.removed[p]
	return l, ok
}

// Read reads the headers of layers (base first), checks their diffIDs
// and returns the tree they make. Layers are read on all cores, each
// decompressed on a goroutine of its own, and applied in order; no
// content is kept. A cancelled ctx stops it with ctx's error.
func Read(ctx context.Context, layers []Layer, o Options) (*Tree, error) {
	t := newTree(layers, o)
	results := make([]chan scanned, len(layers))
	for i := range results {
		results[i] = make(chan scanned, 1)
	}
	ctx, cancel := context.WithCancel(ctx)
	// Workers take the layers in order; a layer's records wait for the
	// layers below to be applied, so at most a few layers' records are
	// held at once.
	workers := min(runtime.GOMAXPROCS(0), len(layers))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				recs, c, err := scanLayer(ctx, layers[i], i, o.CacheDir)
				results[i] <- scanned{recs, c, err}
			}
		}()
	}
	go func() {
		defer close(next)
		for i := range layers {
			if layers[i].Open == nil {
				results[i] <- scanned{}
				continue
			}
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.caches = make([]*layerCache, len(layers))
	ok := false
	defer func() {
		cancel()
		wg.Wait()
		if !ok {
			dropScans(results)
			t.Close()
		}
	}()
	for i := range layers {
		var s scanned
		select {
		case s = <-results[i]:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		t.caches[i] = s.cache
		if s.err != nil {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", t.layerName(i), s.err)
		}
		a := t.newApplier(i)
		for j := range s.recs {
			if err := a.apply(&s.recs[j]); err != nil {
				return nil, fmt.Errorf("%s: entry %q: %w", t.layerName(i), s.recs[j].name, err)
			}
		}
	}
	ok = true
	return t, nil
}

// scanned is what scanLayer found in one layer.
type scanned struct {
	recs  []record
	cache *layerCache
	err   error
}

// dropScans gives back the caches of layers scanned but not applied.
func dropScans(results []chan scanned) {
	for _, r := range results {
		select {
		case s := <-r:
			if s.cache != nil {
				s.cache.close()
			}
		default:
		}
	}
}

// layerName names layer i in errors.
func (t *Tree) layerName(i int) string {
	if i >= 0 && i < len(t.layers) && t.layers[i].Name != "" {
		return fmt.Sprintf("layer %d (%s)", i, t.layers[i].Name)
	}
	return fmt.Sprintf("layer %d", i)
}

// scanLayer reads the headers of layer l (number i), skipping contents,
// and checks its diffID; with a cacheDir, it keeps the uncompressed tar
// of a compressed layer there and returns its cache.
func scanLayer(ctx context.Context, l Layer, i int, cacheDir string) (recs []record, c *layerCache, err error) {
	s, err := openStream(ctx, l, true)
	if err != nil {
		return nil, nil, err
	}
	defer s.close()
	if cacheDir != "" && cacheable(s.kind) {
		if c, err = newLayerCache(cacheDir); err != nil {
			return nil, nil, err
		}
		defer func() {
			if err != nil {
				c.close()
				c = nil
			}
		}()
		s.tee = c
	}
	recs, err = scanHeaders(ctx, s, i)
	if err == nil && c != nil {
		err = c.seal()
	}
	return recs, c, err
}

// scanHeaders reads the records of the tar s (layer i) to its end.
func scanHeaders(ctx context.Context, s *stream, i int) ([]record, error) {
	tr := tar.NewReader(s)
	var recs []record
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, s.fail(fmt.Errorf("read tar: %w", err))
		}
		recs = append(recs, recordOf(h, source{layer: i, entry: n}))
	}
	if err := s.finish(); err != nil {
		return nil, err
	}
	return recs, nil
}

// recordOf takes what the tree needs of a header.
func recordOf(h *tar.Header, src source) record {
	r := record{
		name: h.Name, typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid,
		mtime: h.ModTime.UnixNano(), size: h.Size, linkname: h.Linkname,
		devMajor: h.Devmajor, devMinor: h.Devminor,
	}
	if h.ModTime.IsZero() {
		r.mtime = 0
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		r.src = src
	default:
		r.size = 0
		r.src = source{layer: -1}
	}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, paxXattr); ok && x != "" {
			if r.xattrs == nil {
				r.xattrs = map[string][]byte{}
			}
			r.xattrs[x] = []byte(v)
		}
	}
	return r
}

// stream is a layer's uncompressed tar: the blob read (and so verified)
// on one goroutine, decompressed on another, the diffID hashed on a third
// when asked, a few chunks ahead of the reader.
type stream struct {
	l    Layer
	blob io.ReadCloser
	raw  *chunkpipe.Pipe // the blob, read ahead
	dr   io.ReadCloser   // the decompressor
	kind compression.Kind
	pipe *chunkpipe.Pipe // the decompressed stream, read ahead
	h    *hasher
	// tee, when set, gets every byte read (a layer cache).
	tee io.Writer
}

// Chunks of the pipes: 256 KiB, four ahead on each side, so that a
// stack of many layers open at once (WriteTar) stays within a few MiB
// a layer.
const (
	chunkSize = 256 << 10
	chunks    = 4
)

type hasher struct {
	d digest.Digester
}

func (h *hasher) Write(p []byte) (int, error) { return h.d.Hash().Write(p) }

func openStream(ctx context.Context, l Layer, checkDiffID bool) (*stream, error) {
	if l.Open == nil {
		return nil, errors.New("layer has no content to read")
	}
	b, err := l.Open()
	if err != nil {
		return nil, err
	}
	s := &stream{l: l, blob: b}
	s.raw = chunkpipe.New(ctxio.Reader(ctx, b), io.Discard, chunkpipe.Options{ChunkSize: chunkSize, Chunks: chunks, ReadContext: "read layer"})
	dr, kind, err := compression.NewSniffingReader(s.raw)
	if err != nil {
		s.raw.Stop()
		b.Close()
		if perr := s.raw.ReadErr(); perr != nil {
			return nil, perr
		}
		return nil, fmt.Errorf("decompress: %w", err)
	}
	s.dr, s.kind = dr, kind
	var sink io.Writer = io.Discard
	if checkDiffID && l.DiffID != "" {
		if !l.DiffID.Algorithm().Available() {
			s.close()
			return nil, fmt.Errorf("diffID %s: unsupported algorithm", l.DiffID)
		}
		s.h = &hasher{d: l.DiffID.Algorithm().Digester()}
		sink = s.h
	}
	s.pipe = chunkpipe.New(dr, sink, chunkpipe.Options{ChunkSize: chunkSize, Chunks: chunks, ReadContext: "decompress", WriteContext: "hash", SinkAside: s.h != nil})
	return s, nil
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.pipe.Read(p)
	if n > 0 && s.tee != nil {
		if _, werr := s.tee.Write(p[:n]); werr != nil {
			return n, fmt.Errorf("layer cache: %w", werr)
		}
	}
	return n, err
}

// fail prefers the blob's or the decompressor's error to what it did to
// the tar reader.
func (s *stream) fail(err error) error {
	if perr := s.pipe.ReadErr(); perr != nil {
		if rerr := s.raw.ReadErr(); rerr != nil {
			return rerr
		}
		return perr
	}
	return err
}

// finish reads the rest of the stream (the padding after the tar's end,
// the blob's last bytes, which verify it) and checks the diffID.
func (s *stream) finish() error {
	if _, err := io.Copy(io.Discard, s); err != nil {
		return s.fail(err)
	}
	if err := s.pipe.Wait(); err != nil {
		return s.fail(err)
	}
	// The decompressor may stop before the blob's end: the rest is read
	// too, so the blob is verified whole.
	if _, err := io.Copy(io.Discard, s.raw); err != nil {
		return err
	}
	if err := s.raw.Wait(); err != nil {
		return err
	}
	if s.h != nil {
		if got := s.h.d.Digest(); got != s.l.DiffID {
			return fmt.Errorf("%w: uncompressed content is %s, config says %s", ErrDiffIDMismatch, got, s.l.DiffID)
		}
	}
	return nil
}

// close stops the stream's goroutines and closes the blob.
func (s *stream) close() {
	if s.pipe != nil {
		s.pipe.Stop()
	}
	if s.dr != nil {
		s.dr.Close()
	}
	s.raw.Stop()
	s.blob.Close()
}
