package layer

import (
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/compression"
)

// Stream is a layer blob being decompressed, and its uncompressed stream
// hashed, on goroutines of their own (a chunkpipe), up to 16 MiB ahead of
// its reader: enough to keep decompressing, and feeding a vfs rootfs,
// while a driver prepares the directory Extract writes into.
type Stream struct {
	pipe   *chunkpipe.Pipe
	dr     io.ReadCloser
	diffID digest.Digest
	h      hash.Hash
	once   sync.Once
}

// NewStream starts reading r, compressed or not, to be checked against
// diffID. The caller closes r after the Stream.
func NewStream(r io.Reader, diffID digest.Digest) (*Stream, error) {
	alg := diffID.Algorithm()
	if !alg.Available() {
		return nil, fmt.Errorf("diffID %s: unsupported algorithm", diffID)
	}
	dr, _, err := compression.NewSniffingReader(r)
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	s := &Stream{dr: dr, diffID: diffID, h: alg.Hash()}
	// 1 MiB chunks: small files cost no goroutine switch. The hash runs
	// aside: where a layer's files are large, writing them is cheap and
	// the decompressing alone sets the pace.
	s.pipe = chunkpipe.New(dr, s.h, chunkpipe.Options{ChunkSize: 1 << 20, Chunks: 16, ReadContext: "decompress", WriteContext: "hash", SinkAside: true})
	return s, nil
}

// Read reads the uncompressed stream.
func (s *Stream) Read(b []byte) (int, error) { return s.pipe.Read(b) }

// Close ends the stream (if it is not at its end) and waits for its
// goroutines; the digest is final once Close returns. It may be called
// more than once.
func (s *Stream) Close() {
	s.once.Do(func() {
		s.pipe.Stop()
		s.dr.Close()
	})
}

// digest is the uncompressed stream's digest, once Close returned.
func (s *Stream) digest() digest.Digest { return digest.NewDigest(s.diffID.Algorithm(), s.h) }
