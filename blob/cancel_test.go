package blob

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/ctxio/ctxtest"
)

// Every stream of the store stops within a megabyte of a cancel, with the
// context's error, and leaves neither a blob nor a staging file.
func TestCancelStopsStreams(t *testing.T) {
	data := content(7, 8<<20)
	d := digest.FromBytes(data)
	size := int64(len(data))

	t.Run("put", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		r := &ctxtest.Reader{R: bytes.NewReader(data), N: 3 << 20, Cancel: cancel}
		_, _, err := s.Put(ctx, r, d, size)
		checkCancelled(t, s, d, err)
		if r.N < -(2 << 20) {
			t.Fatalf("read %d bytes past the cancel", -r.N)
		}
	})
	t.Run("copy hashing for a hard link", func(t *testing.T) {
		dir := t.TempDir()
		src := New(filepath.Join(dir, "src", "blobs"), filepath.Join(dir, "src", "staging"))
		dst := New(filepath.Join(dir, "dst", "blobs"), filepath.Join(dir, "dst", "staging"))
		if _, err := src.PutBytes(data); err != nil {
			t.Fatal(err)
		}
		_, err := dst.CopyFrom(ctxtest.CancelAtCheck(4), src, d, size)
		checkCancelled(t, dst, d, err)
		if !src.Has(d, size) {
			t.Fatal("the source lost its blob")
		}
		if m, err := dst.CopyFrom(context.Background(), src, d, size); err != nil || m != CopyHardlink {
			t.Fatalf("copy after the cancelled one: %s, %v", m, err)
		}
	})
	t.Run("copy streaming", func(t *testing.T) {
		src, dst := newStore(t), newStore(t)
		if _, err := src.PutBytes(data); err != nil {
			t.Fatal(err)
		}
		r, err := src.Open(d, size)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		_, err = dst.stream(ctxtest.CancelAtCheck(3), r, d, size)
		checkCancelled(t, dst, d, err)
	})
	t.Run("verify", func(t *testing.T) {
		s := newSealedStore(t, t.TempDir())
		if _, err := s.PutBytes(data); err != nil {
			t.Fatal(err)
		}
		if err := s.Verify(ctxtest.CancelAtCheck(3), d, size); !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify = %v, want context.Canceled", err)
		}
		// Stopped is not failed: the blob keeps its seal.
		if _, ok := s.sealed(d, size); !ok {
			t.Fatal("a cancelled Verify dropped the seal")
		}
	})
}

func checkCancelled(t *testing.T, s *Store, d digest.Digest, err error) {
	t.Helper()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if s.Has(d, -1) {
		t.Fatal("the blob was stored")
	}
	if f := stagingFiles(t, s); len(f) > 0 {
		t.Fatalf("staging files left: %v", f)
	}
}
