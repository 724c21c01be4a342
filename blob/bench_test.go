package blob

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// benchSizes are a config-sized blob, a small layer and a large layer.
var benchSizes = []int{4 << 10, 1 << 20, 64 << 20}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprintf("%dKiB", n>>10)
	}
}

// benchData is incompressible content of n bytes; seed makes blobs
// differ so no write is skipped as a duplicate.
func benchData(n int, seed uint64) []byte {
	b := make([]byte, n)
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

func newBenchStore(b *testing.B) *Store {
	d := b.TempDir()
	return New(filepath.Join(d, "blobs"), filepath.Join(d, "staging"))
}

// BenchmarkWrite is the write path of every pull, import and commit:
// stream, hash, fsync, rename.
func BenchmarkWrite(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := newBenchStore(b)
			data := benchData(n, 1)
			b.SetBytes(int64(n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// A different first word per iteration: every write is a
				// new blob.
				data[0], data[1], data[2], data[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
				w, err := s.NewWriter()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := w.ReadFrom(bytes.NewReader(data)); err != nil {
					b.Fatal(err)
				}
				d, _, err := w.Commit()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(d); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkPutVerified writes with the expected digest known, as a pull
// or a copy does.
func BenchmarkPutVerified(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := newBenchStore(b)
			data := benchData(n, 2)
			d := digest.FromBytes(data)
			b.SetBytes(int64(n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := s.Put(context.Background(), bytes.NewReader(data), d, int64(n)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.Delete(d); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkOpenRead is a verified read of a whole blob (fsck, unpack,
// save), from the page cache.
func BenchmarkOpenRead(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			s := newBenchStore(b)
			d, err := s.PutBytes(benchData(n, 3))
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, 1<<20)
			b.SetBytes(int64(n))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, err := s.Open(d, int64(n))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.CopyBuffer(io.Discard, r, buf); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// BenchmarkCopyFrom copies a blob between two stores on one filesystem
// (strata copy between layouts): a reflink or hard link after the
// verification read.
func BenchmarkCopyFrom(b *testing.B) {
	n := 64 << 20
	d := b.TempDir()
	src := New(filepath.Join(d, "a", "blobs"), filepath.Join(d, "a", "staging"))
	dst := New(filepath.Join(d, "b", "blobs"), filepath.Join(d, "b", "staging"))
	dg, err := src.PutBytes(benchData(n, 4))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(n))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m, err := dst.CopyFrom(context.Background(), src, dg, int64(n))
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.Logf("copy method: %s", m)
		}
		b.StopTimer()
		if err := dst.Delete(dg); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
