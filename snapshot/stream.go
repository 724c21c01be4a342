package snapshot

import (
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/compression"
)

// layerStream decompresses a layer blob and hashes the uncompressed
// stream on goroutines of their own (a chunkpipe), up to 16 MiB ahead of
// its reader: enough to keep decompressing, and feeding a vfs rootfs,
// while the driver prepares the snapshot directory.
type layerStream struct {
	*chunkpipe.Pipe
	dr   io.ReadCloser
	alg  digest.Algorithm
	h    hash.Hash
	once sync.Once
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
	s := &layerStream{dr: dr, alg: alg, h: alg.Hash()}
	// 1 MiB chunks: small files cost no goroutine switch. The hash runs
	// aside: where a layer's files are large, writing them is cheap and
	// the decompressing alone sets the pace.
	s.Pipe = chunkpipe.New(dr, s.h, chunkpipe.Options{ChunkSize: 1 << 20, Chunks: 16, ReadContext: "decompress", WriteContext: "hash", SinkAside: true})
	return s, nil
}

// stop ends the stream (if it is not at its end) and waits for its
// goroutine; the digest is final once stop returns.
func (s *layerStream) stop() {
	s.once.Do(func() {
		s.Pipe.Stop()
		s.dr.Close()
	})
}

// digest is the uncompressed stream's digest, once stop returned.
func (s *layerStream) digest() digest.Digest { return digest.NewDigest(s.alg, s.h) }
