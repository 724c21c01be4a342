package snapshot

import (
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/compression"
)

const (
	// streamChunk is what the decompressing goroutine hands over at a
	// time: large enough that small files cost no goroutine switch.
	streamChunk = 1 << 20
	// streamAhead is how many chunks it may run ahead of the extraction:
	// enough to keep decompressing (and feeding a vfs rootfs) while the
	// driver prepares the snapshot directory, little enough for memory.
	streamAhead = 16
)

// layerStream decompresses a layer blob and hashes the uncompressed
// stream on a goroutine of its own, up to streamAhead chunks ahead of
// its reader.
type layerStream struct {
	dr     io.ReadCloser
	alg    digest.Algorithm
	h      hash.Hash
	chunks chan []byte
	free   chan []byte
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	err    error // why the stream ended early; set before chunks closes
	chunkReader
}

// startLayerStream starts reading r, compressed or not, to be checked
// against diffID's algorithm.
func startLayerStream(r io.Reader, diffID digest.Digest) (*layerStream, error) {
	alg := diffID.Algorithm()
	if !alg.Available() {
		return nil, fmt.Errorf("diffID %s: unsupported algorithm", diffID)
	}
	dr, _, err := compression.NewSniffingReader(r)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	s := &layerStream{
		dr: dr, alg: alg, h: alg.Hash(),
		chunks: make(chan []byte, streamAhead), free: make(chan []byte, streamAhead+2),
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	s.chunkReader = chunkReader{chunks: s.chunks, free: s.free, closed: s.closedErr}
	go s.run()
	return s, nil
}

func (s *layerStream) run() {
	defer close(s.done)
	defer close(s.chunks)
	for {
		var b []byte
		select {
		case b = <-s.free:
		default:
			b = make([]byte, streamChunk)
		}
		n, err := io.ReadFull(s.dr, b[:streamChunk])
		if n > 0 {
			s.h.Write(b[:n])
			select {
			case s.chunks <- b[:n]:
			case <-s.quit:
				return
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return
		}
		if err != nil {
			s.err = fmt.Errorf("decompress: %w", err)
			return
		}
	}
}

// closedErr says why the chunks ended: a decompression error, a stop,
// or nothing (the end of the layer).
func (s *layerStream) closedErr() error {
	if s.err != nil {
		return s.err
	}
	select {
	case <-s.quit:
		return ErrInterrupted
	default:
		return nil
	}
}

// stop ends the stream (if it is not at its end) and waits for its
// goroutine; the digest is final once stop returns.
func (s *layerStream) stop() {
	s.once.Do(func() {
		close(s.quit)
		<-s.done
		s.dr.Close()
	})
}

// digest is the uncompressed stream's digest, once stop returned.
func (s *layerStream) digest() digest.Digest { return digest.NewDigest(s.alg, s.h) }

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
