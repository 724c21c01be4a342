package vfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// rootfsStream builds a vfs bundle's rootfs while the image's missing
// layers are extracted into the store, instead of copying the top
// snapshot afterwards: each layer is decompressed once, and its tar
// stream is applied twice, into the snapshot (by Store.Ensure, which
// hashes it against the diffID) and, on a second goroutine, into the
// rootfs. The rootfs starts as a copy of the last snapshot the store
// already had (or empty), made while Ensure prepares the first missing
// layer. So on two cores a cold vfs unpack takes about as long as the
// extraction alone, and files are still written twice.
//
// The store's rules hold: snapshots are made and checked by Ensure as
// before, the rootfs is trusted only once every layer it took passed
// Ensure (Unpack fails, and removes the bundle, otherwise), and the
// extraction never waits on a rootfs that failed (its stream is drained).
// When the streams do not line up with the chain (another process made a
// snapshot first, so its layer was never read), the partial rootfs is
// removed and the top snapshot copied as before.
type rootfsStream struct {
	store  *snapshot.Store
	rootfs string
	v      *Driver

	feeds chan *feed
	// ctx ends when the rootfs is abandoned (Stop, or the unpack's
	// context), and with it the feeds and the rootfs's Apply.
	ctx      context.Context
	cancel   context.CancelFunc
	endOnce  sync.Once
	exited   chan struct{}
	last     *feed
	reopened atomic.Bool

	// Consumer state, read once exited is closed.
	started bool          // rootfs was created
	at      digest.Digest // chain ID whose tree the rootfs holds
	broken  bool          // streams abandoned: copy instead
	err     error         // the rootfs could not be written
}

// feed carries one layer's uncompressed tar stream to the rootfs.
type feed struct {
	parent *snapshot.Info // the snapshot the layer goes on, nil for a base
	chain  digest.Digest
	digest digest.Digest
	chunks chan []byte
	free   chan []byte
	opened atomic.Bool
	once   sync.Once
	err    error // why the stream ended early; set before chunks closes
}

// errNotStreamed ends the feed of a layer Ensure did not read.
var errNotStreamed = errors.New("layer was not read")

// errStreamCut ends the feed of a layer whose reader was closed early.
var errStreamCut = errors.New("layer stream closed before its end")

// StreamRootfs builds the rootfs at rootfs from the layers an unpack
// extracts, unless owners must be shifted (the copy does that).
func (v *Driver) StreamRootfs(ctx context.Context, s *snapshot.Store, rootfs string, m *ids.Map, layers int) snapshot.RootfsStream {
	if !m.Empty() {
		return nil
	}
	r := &rootfsStream{store: s, rootfs: rootfs, v: v, feeds: make(chan *feed, layers+1), exited: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(ctx)
	go r.run()
	return r
}

// Layer wraps l, to go on parent, so that its stream also feeds the
// rootfs when Ensure has to extract it.
func (r *rootfsStream) Layer(parent *snapshot.Info, l snapshot.Layer) snapshot.Layer {
	chain := snapshot.ChainID(parentChain(parent), l.DiffID)
	if r.store.Has(r.v, chain) {
		return l // in the store: Ensure will not read it
	}
	f := &feed{parent: parent, chain: chain, digest: l.Digest, chunks: make(chan []byte, 8), free: make(chan []byte, 10)}
	r.last = f
	r.feeds <- f
	open := l.Open
	l.Open = func() (io.ReadCloser, error) {
		if !f.opened.CompareAndSwap(false, true) {
			r.reopened.Store(true)
			return open()
		}
		rc, err := open()
		if err != nil {
			f.end(err)
			return nil, err
		}
		dr, _, err := compression.NewSniffingReader(rc)
		if err != nil {
			rc.Close()
			f.end(err)
			return nil, fmt.Errorf("decompress: %w", err)
		}
		return &teeReader{f: f, blob: rc, dr: dr, quit: r.ctx.Done()}, nil
	}
	return l
}

// Settle is called after each Ensure: a layer that was not read, or not
// to its end, ends its feed.
func (r *rootfsStream) Settle() {
	if r.last == nil {
		return
	}
	if r.last.opened.Load() {
		r.last.end(errStreamCut)
	} else {
		r.last.end(errNotStreamed)
	}
}

// Create makes c's rootfs: the streamed one when it holds the top
// snapshot's tree, else the driver's copy.
func (r *rootfsStream) Create(ctx context.Context, c *snapshot.Container) error {
	r.finish()
	if r.err != nil {
		return r.err
	}
	if top := c.Top(); top != nil && !r.broken && !r.reopened.Load() && r.started && r.at == top.ChainID {
		return nil
	}
	if r.started {
		if err := fsx.RemoveAll(r.rootfs); err != nil {
			return fmt.Errorf("remove partial rootfs: %w", err)
		}
	}
	return r.v.CreateRootfs(ctx, c)
}

// finish waits for the rootfs to take every stream sent.
func (r *rootfsStream) finish() {
	r.endOnce.Do(func() { close(r.feeds) })
	<-r.exited
}

// Stop abandons the rootfs (Unpack failed) and waits for its goroutine.
func (r *rootfsStream) Stop() {
	r.cancel()
	if r.last != nil {
		r.last.end(context.Canceled)
	}
	r.finish()
}

func (r *rootfsStream) run() {
	defer close(r.exited)
	var files layer.Files
	for f := range r.feeds {
		if r.err == nil && !r.broken {
			if err := r.apply(f, &files); err != nil {
				r.err = err
			}
		}
		f.drain()
		if f.err != nil {
			r.broken = true
		}
	}
}

// apply puts f's layer on the rootfs, which it first makes from f's
// parent when f is the first layer streamed.
func (r *rootfsStream) apply(f *feed, files *layer.Files) error {
	var parentChain digest.Digest
	if f.parent != nil {
		parentChain = f.parent.ChainID
	}
	if !r.started {
		r.started = true
		if f.parent == nil {
			if err := os.Mkdir(r.rootfs, 0o755); err != nil {
				return fmt.Errorf("create rootfs: %w", err)
			}
			*files = layer.Files{}
		} else {
			co := r.v.copyOptions()
			co.writableDirs = r.v.rootless
			if err := copyTree(r.ctx, f.parent.FS(), r.rootfs, co); err != nil {
				return fmt.Errorf("create rootfs from snapshot %s: %w", f.parent.ID, err)
			}
			fl, err := f.parent.ReadFiles()
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", f.parent.ID, err)
			}
			*files = fl
		}
	} else if r.at != parentChain {
		r.broken = true
		return nil
	} else if r.v.rootless {
		if err := layer.UnlockDirs(r.rootfs, *files); err != nil {
			return err
		}
	}
	if err := layer.Apply(r.ctx, r.rootfs, f.reader(), r.v.applyOptions(), *files); err != nil {
		f.drain()
		if f.err != nil || r.ctx.Err() != nil {
			// The stream, not the rootfs, failed: Ensure says why.
			r.broken = true
			return nil
		}
		return fmt.Errorf("rootfs: layer %s: %w", f.digest, err)
	}
	r.at = f.chain
	return nil
}

// end closes the feed; err says why it ended early (nil: at its end).
func (f *feed) end(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.chunks)
	})
}

// drain takes what is left of the stream.
func (f *feed) drain() {
	for b := range f.chunks {
		f.recycle(b)
	}
}

func (f *feed) recycle(b []byte) {
	select {
	case f.free <- b:
	default:
	}
}

// feedChunk is the size of the chunks a teeReader hands to the rootfs. A
// decompressor returns at most its 32 KiB window per read: sent as they
// come, the feed's few chunks would let the rootfs fall only a few
// hundred KiB behind before the decompressing stalled, and the
// extraction with it.
const feedChunk = 1 << 20

// teeReader is the decompressed layer Ensure reads; every byte read is
// also handed to the rootfs, gathered in chunks of feedChunk.
type teeReader struct {
	f    *feed
	blob io.ReadCloser
	dr   io.ReadCloser
	quit <-chan struct{}
	gone bool
	pend []byte // bytes read and not yet sent
}

func (t *teeReader) Read(p []byte) (int, error) {
	n, err := t.dr.Read(p)
	if n > 0 && !t.gone {
		if t.pend != nil && len(t.pend)+n > cap(t.pend) {
			t.flush()
		}
		if t.pend == nil {
			select {
			case t.pend = <-t.f.free:
			default:
			}
			if cap(t.pend) < n {
				t.pend = make([]byte, 0, max(n, feedChunk))
			}
			t.pend = t.pend[:0]
		}
		t.pend = append(t.pend, p[:n]...)
		if len(t.pend) == cap(t.pend) {
			t.flush()
		}
	}
	switch {
	case err == io.EOF:
		t.flush()
		// Read the blob to its end, where its digest is checked.
		if _, derr := io.Copy(io.Discard, t.blob); derr != nil {
			t.f.end(derr)
			return n, derr
		}
		t.f.end(nil)
	case err != nil:
		t.f.end(err)
	}
	return n, err
}

// flush sends the pending bytes to the rootfs.
func (t *teeReader) flush() {
	if t.pend == nil || t.gone {
		return
	}
	select {
	case t.f.chunks <- t.pend:
	case <-t.quit:
		t.gone = true
	}
	t.pend = nil
}

func (t *teeReader) Close() error {
	t.f.end(errStreamCut)
	t.dr.Close()
	return t.blob.Close()
}

// reader reads the feed's chunks as one stream.
func (f *feed) reader() *chunkReader {
	return &chunkReader{chunks: f.chunks, free: f.free, closed: func() error { return f.err }}
}

// chunkReader reads a channel of chunks as one stream, handing each
// chunk back on free (if there is room) once it is read. closed gives
// the error to return when the channel is closed (nil: io.EOF); it is
// set before the close.
type chunkReader struct {
	chunks <-chan []byte
	free   chan<- []byte
	closed func() error
	cur    []byte
	buf    []byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.buf != nil {
			select {
			case c.free <- c.buf[:cap(c.buf)]:
			default:
			}
			c.buf = nil
		}
		b, ok := <-c.chunks
		if !ok {
			if err := c.closed(); err != nil {
				return 0, err
			}
			return 0, io.EOF
		}
		c.cur, c.buf = b, b
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}
