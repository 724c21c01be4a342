package compression

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
)

// layerLike returns n bytes that compress roughly as a rootfs layer does
// (about 3:1): mostly text-like runs of words, with incompressible blocks
// standing for binaries that are already compressed.
func layerLike(n int) []byte {
	words := []string{"func", "return", "err", "nil", "if", "for", "range", "package", "import",
		"the", "layer", "digest", "size", "json", "string", "int64", "/usr/lib/", ".so.6", "\n\t", " := ", "{\n", "}\n"}
	rng := rand.New(rand.NewPCG(1, 2))
	var key [32]byte
	noise := rand.NewChaCha8(key)
	out := make([]byte, 0, n)
	for len(out) < n {
		if rng.IntN(4) == 0 {
			blk := make([]byte, 4096)
			_, _ = noise.Read(blk)
			out = append(out, blk...)
			continue
		}
		for i := 0; i < 512 && len(out) < n; i++ {
			out = append(out, words[rng.IntN(len(words))]...)
			out = append(out, ' ')
		}
	}
	return out[:n]
}

const benchSize = 32 << 20

var benchKinds = []Kind{Gzip, Zstd}

// BenchmarkCompress is the compressor alone, on all cores, at the default
// level: what import and commit pay per byte of layer.
func BenchmarkCompress(b *testing.B) {
	data := layerLike(benchSize)
	for _, k := range benchKinds {
		b.Run(string(k), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var out int64
			for i := 0; i < b.N; i++ {
				cw := &countWriter{}
				zw, err := NewWriter(cw, k, DefaultLevel)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := zw.Write(data); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
				out = cw.n
			}
			b.ReportMetric(float64(len(data))/float64(out), "ratio")
		})
	}
}

// BenchmarkDecompress is the decompressor alone: what unpack and save pay
// per byte of layer.
func BenchmarkDecompress(b *testing.B) {
	data := layerLike(benchSize)
	for _, k := range benchKinds {
		b.Run(string(k), func(b *testing.B) {
			var z bytes.Buffer
			zw, err := NewWriter(&z, k, DefaultLevel)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := zw.Write(data); err != nil {
				b.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				zr, err := NewReader(bytes.NewReader(z.Bytes()), k)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, zr, buf)
				if err != nil {
					b.Fatal(err)
				}
				zr.Close()
				if n != int64(len(data)) {
					b.Fatalf("decompressed %d bytes, want %d", n, len(data))
				}
			}
		})
	}
}

// BenchmarkPipeline is the one-pass import pipeline without the disk:
// the uncompressed stream is hashed (diff ID) while it is compressed, and
// the compressed stream is hashed (blob digest) as it is written.
func BenchmarkPipeline(b *testing.B) {
	data := layerLike(benchSize)
	for _, k := range append(benchKinds, None) {
		b.Run(string(k), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			buf := make([]byte, 1<<20)
			for i := 0; i < b.N; i++ {
				blobHash := sha256.New()
				zw, err := NewWriter(blobHash, k, DefaultLevel)
				if err != nil {
					b.Fatal(err)
				}
				diffID := sha256.New()
				if _, err := io.CopyBuffer(io.MultiWriter(diffID, zw), bytes.NewReader(data), buf); err != nil {
					b.Fatal(err)
				}
				if err := zw.Close(); err != nil {
					b.Fatal(err)
				}
				_, _ = diffID.Sum(nil), blobHash.Sum(nil)
			}
		})
	}
}

// BenchmarkSniff is the cost of detecting a stream's compression, paid
// once per layer read.
func BenchmarkSniff(b *testing.B) {
	var z bytes.Buffer
	zw, _ := NewWriter(&z, Zstd, DefaultLevel)
	_, _ = zw.Write(layerLike(64 << 10))
	_ = zw.Close()
	b.SetBytes(int64(z.Len()))
	for i := 0; i < b.N; i++ {
		rc, k, err := NewSniffingReader(bytes.NewReader(z.Bytes()))
		if err != nil || k != Zstd {
			b.Fatalf("sniff: %v %v", k, err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
