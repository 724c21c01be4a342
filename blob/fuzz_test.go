package blob

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

// FuzzVerifiedRead stores arbitrary bytes under the digest of other bytes
// and checks that reading returns exactly the content when it matches and
// a mismatch error otherwise, whatever the sizes.
func FuzzVerifiedRead(f *testing.F) {
	f.Add([]byte("content"), []byte("content"), int64(-1))
	f.Add([]byte("content"), []byte("other"), int64(7))
	f.Add([]byte(""), []byte(""), int64(0))
	f.Add([]byte("abc"), []byte("abcd"), int64(4))
	dir := f.TempDir()
	s := New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
	f.Fuzz(func(t *testing.T, stored, named []byte, size int64) {
		d := digest.FromBytes(named)
		p, _ := s.Path(d)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.Remove(p)
		if err := os.WriteFile(p, stored, 0o444); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(p)
		got, err := s.ReadAll(d, size, 1<<20)
		match := bytes.Equal(stored, named) && (size < 0 || size == int64(len(named)))
		if match {
			if err != nil || !bytes.Equal(got, stored) {
				t.Fatalf("matching blob: %v", err)
			}
			return
		}
		if err == nil {
			t.Fatalf("mismatched blob read without error")
		}
		if !errors.Is(err, ErrDigestMismatch) && !errors.Is(err, ErrSizeMismatch) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
