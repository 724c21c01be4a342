package merge

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/s2"
	"github.com/strata-oci/strata/internal/compression"
	"golang.org/x/sys/unix"
)

// A layer cache keeps a compressed layer's uncompressed tar, as Read
// reads it, so that WriteTar reads it back instead of decompressing the
// layer a second time. It is stored as it is, in S2 framing (a CRC of
// each block, so that a damaged file is noticed) without compressing:
// S2's fastest compression measured a third of what the cache saves,
// while writing the tar costs a copy into the page cache. It takes the
// layer's uncompressed size on disk. It is an unlinked file of
// Options.CacheDir, so
// nothing is left behind when the process dies; Tree.Close gives the
// space back. The blob was verified whole (and the diffID checked) while
// the cache was written; WriteTar still checks each entry it takes
// against the tree (ErrChanged).
type layerCache struct {
	f    *os.File
	w    *s2.Writer
	size int64
}

// newLayerCache makes an empty cache in dir.
func newLayerCache(dir string) (*layerCache, error) {
	f, err := tmpFile(dir)
	if err != nil {
		return nil, fmt.Errorf("layer cache: %w", err)
	}
	return &layerCache{f: f, w: s2.NewWriter(f, s2.WriterConcurrency(1), s2.WriterUncompressed())}, nil
}

func (c *layerCache) Write(p []byte) (int, error) { return c.w.Write(p) }

// seal flushes the cache and makes it readable.
func (c *layerCache) seal() error {
	if err := c.w.Close(); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	end, err := c.f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	c.w, c.size = nil, end
	return nil
}

// open reads the cached tar from its start.
func (c *layerCache) open() (io.ReadCloser, error) {
	if c.w != nil {
		return nil, errors.New("layer cache not sealed")
	}
	return io.NopCloser(s2.NewReader(io.NewSectionReader(c.f, 0, c.size))), nil
}

func (c *layerCache) close() {
	if c.w != nil {
		c.w.Close()
	}
	c.f.Close()
}

// cacheable says whether a layer of kind k is worth a cache: an
// uncompressed layer is read again as cheaply as the cache would be.
func cacheable(k compression.Kind) bool { return k != compression.None }

// Close gives back the space of the layer caches (Options.CacheDir). The
// tree's WriteTar reads the layers again afterwards.
func (t *Tree) Close() error {
	for i, c := range t.caches {
		if c != nil {
			c.close()
			t.caches[i] = nil
		}
	}
	return nil
}

// source returns layer i as WriteTar reads it: from its cache when it
// has one.
func (t *Tree) source(i int) Layer {
	l := t.layers[i]
	if i < len(t.caches) && t.caches[i] != nil {
		l.Open = t.caches[i].open
	}
	return l
}

// tmpFile opens a file in dir that has no name, so that no kill can leave
// it behind: O_TMPFILE, else a named file unlinked at once (empty if a
// kill comes in between).
func tmpFile(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), filepath.Join(dir, "(layer cache)")), nil
	}
	f, err := os.CreateTemp(dir, ".strata-merge-cache-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}
