package blob

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	dir := t.TempDir()
	return New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
}

// content returns n deterministic pseudo-random bytes.
func content(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}

func stagingFiles(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(s.StagingDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteStreamsAndCommits(t *testing.T) {
	s := newStore(t)
	data := content(1, 3<<20+17)
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Small writes: the digest is computed as the bytes go by.
	for off := 0; off < len(data); off += 4099 {
		end := min(off+4099, len(data))
		if _, err := w.Write(data[off:end]); err != nil {
			t.Fatal(err)
		}
	}
	want := digest.FromBytes(data)
	if w.Digest() != want || w.Size() != int64(len(data)) {
		t.Fatalf("running digest %s size %d, want %s %d", w.Digest(), w.Size(), want, len(data))
	}
	// Not visible before Commit.
	if s.Has(want, -1) {
		t.Fatal("blob visible before commit")
	}
	d, n, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if d != want || n != int64(len(data)) {
		t.Fatalf("commit gave %s %d", d, n)
	}
	p, _ := s.Path(d)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("blob mode %v, want read-only", fi.Mode())
	}
	if got := stagingFiles(t, s); len(got) != 0 {
		t.Errorf("staging not empty after commit: %v", got)
	}
	got, err := s.ReadAll(d, n, 1<<30)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("close after commit: %v", err)
	}
}

func TestWriteExpectedMismatch(t *testing.T) {
	data := []byte("the content")
	other := digest.FromString("other content")
	tests := []struct {
		name    string
		d       digest.Digest
		size    int64
		write   []byte
		wantErr error
		atWrite bool
	}{
		{"digest", other, int64(len(data)), data, ErrDigestMismatch, false},
		{"digest any size", other, -1, data, ErrDigestMismatch, false},
		{"short", digest.FromBytes(data), int64(len(data)) + 5, data, ErrSizeMismatch, false},
		{"long", digest.FromBytes(data), int64(len(data)) - 1, data, ErrSizeMismatch, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			w, err := s.NewWriter(WithExpected(tt.d, tt.size))
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			_, err = w.Write(tt.write)
			if tt.atWrite {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("write: got %v, want %v", err, tt.wantErr)
				}
				w.Close()
			} else {
				if err != nil {
					t.Fatal(err)
				}
				_, _, err = w.Commit()
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("commit: got %v, want %v", err, tt.wantErr)
				}
				if tt.wantErr == ErrDigestMismatch {
					// The error names both digests.
					if !strings.Contains(err.Error(), tt.d.String()) || !strings.Contains(err.Error(), digest.FromBytes(data).String()) {
						t.Errorf("error %q does not name both digests", err)
					}
				}
			}
			if s.Has(tt.d, -1) || s.Has(digest.FromBytes(data), -1) {
				t.Error("mismatched blob became visible")
			}
			if got := stagingFiles(t, s); len(got) != 0 {
				t.Errorf("staging files left behind: %v", got)
			}
		})
	}
}

func TestPutVerifies(t *testing.T) {
	s := newStore(t)
	data := []byte("hello")
	if _, _, err := s.Put(context.Background(), bytes.NewReader(data), digest.FromString("bye"), 5); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("Put with wrong digest: %v", err)
	}
	if got := stagingFiles(t, s); len(got) != 0 {
		t.Errorf("staging files left behind: %v", got)
	}
	d, n, err := s.Put(context.Background(), bytes.NewReader(data), "", -1)
	if err != nil || d != digest.FromBytes(data) || n != 5 {
		t.Fatalf("Put: %s %d %v", d, n, err)
	}
}

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (f failReader) Read([]byte) (int, error) {
	f.t.Error("existing blob was read again")
	return 0, io.EOF
}

func TestWriteExistingIsNoop(t *testing.T) {
	s := newStore(t)
	data := []byte("already here")
	d, err := s.PutBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := s.Path(d)
	before, _ := os.Stat(p)
	if _, _, err := s.Put(context.Background(), failReader{t}, d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBytes(data); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(p)
	if !os.SameFile(before, after) {
		t.Error("existing blob was replaced")
	}
	// A full writer of an existing blob commits without publishing again.
	w, err := s.NewWriter(WithExpected(d, int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if _, _, err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	after, _ = os.Stat(p)
	if !os.SameFile(before, after) {
		t.Error("existing blob was replaced by a writer")
	}
}

func TestTwoWritersSameBlob(t *testing.T) {
	s := newStore(t)
	data := content(2, 1<<20)
	w1, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	w2, err := s.NewWriter(WithExpected(digest.FromBytes(data), int64(len(data))))
	if err != nil {
		t.Fatal(err)
	}
	half := len(data) / 2
	w1.Write(data[:half])
	w2.Write(data[:half])
	w2.Write(data[half:])
	w1.Write(data[half:])
	for i, w := range []*Writer{w1, w2} {
		if d, _, err := w.Commit(); err != nil || d != digest.FromBytes(data) {
			t.Fatalf("writer %d: %s %v", i+1, d, err)
		}
	}
	if err := s.Verify(context.Background(), digest.FromBytes(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got := stagingFiles(t, s); len(got) != 0 {
		t.Errorf("staging files left behind: %v", got)
	}
}

func TestCloseWithoutCommitRemovesStaging(t *testing.T) {
	s := newStore(t)
	w, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	if len(stagingFiles(t, s)) != 1 {
		t.Fatal("no staging file while writing")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := stagingFiles(t, s); len(got) != 0 {
		t.Errorf("staging files left behind: %v", got)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after close succeeded")
	}
	if _, _, err := w.Commit(); err == nil {
		t.Error("commit after close succeeded")
	}
}

// readAll reads r whole in small pieces and returns the final error.
func readAll(r io.Reader) error {
	buf := make([]byte, 777)
	for {
		_, err := r.Read(buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func TestReaderVerifies(t *testing.T) {
	data := content(3, 100000)
	d := digest.FromBytes(data)
	size := int64(len(data))
	tests := []struct {
		name    string
		damage  func(p string) error
		size    int64
		openErr error
		readErr error
	}{
		{"intact", nil, size, nil, nil},
		{"intact any size", nil, -1, nil, nil},
		{"flipped byte", func(p string) error { return flip(p, 5000) }, size, nil, ErrDigestMismatch},
		{"flipped last byte", func(p string) error { return flip(p, size-1) }, -1, nil, ErrDigestMismatch},
		{"truncated", func(p string) error { return truncate(p, size-10) }, size, ErrSizeMismatch, nil},
		{"truncated any size", func(p string) error { return truncate(p, size-10) }, -1, nil, ErrDigestMismatch},
		{"grown", func(p string) error { return appendTo(p, []byte("more")) }, size, ErrSizeMismatch, nil},
		{"wrong size asked", nil, size + 1, ErrSizeMismatch, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if _, err := s.PutBytes(data); err != nil {
				t.Fatal(err)
			}
			p, _ := s.Path(d)
			if tt.damage != nil {
				if err := tt.damage(p); err != nil {
					t.Fatal(err)
				}
			}
			r, err := s.Open(d, tt.size)
			if !errors.Is(err, tt.openErr) || (tt.openErr == nil && err != nil) {
				t.Fatalf("open: got %v, want %v", err, tt.openErr)
			}
			if err != nil {
				return
			}
			defer r.Close()
			err = readAll(r)
			if !errors.Is(err, tt.readErr) || (tt.readErr == nil && err != nil) {
				t.Fatalf("read: got %v, want %v", err, tt.readErr)
			}
			// The error sticks: a second read does not turn it into EOF.
			if tt.readErr != nil {
				if _, err2 := r.Read(make([]byte, 10)); !errors.Is(err2, tt.readErr) {
					t.Errorf("second read: %v", err2)
				}
			}
			// The other read paths agree.
			_, aerr := s.ReadAll(d, tt.size, 1<<20)
			verr := s.Verify(context.Background(), d, tt.size)
			want := tt.openErr
			if want == nil {
				want = tt.readErr
			}
			for name, e := range map[string]error{"ReadAll": aerr, "Verify": verr} {
				if !errors.Is(e, want) || (want == nil && e != nil) {
					t.Errorf("%s: got %v, want %v", name, e, want)
				}
			}
		})
	}
}

// A blob that grows while it is read is an error, not a hang and not a
// longer read.
func TestReaderBlobGrowsWhileReading(t *testing.T) {
	s := newStore(t)
	data := content(4, 4096)
	d, err := s.PutBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Open(d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, _ := s.Path(d)
	if err := appendTo(p, bytes.Repeat([]byte("x"), 1<<20)); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, err = r.WriteTo(&got)
	if !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("got %v, want a size mismatch", err)
	}
	if got.Len() > len(data) {
		t.Errorf("read %d bytes past the expected size", got.Len()-len(data))
	}
}

func TestSHA512(t *testing.T) {
	s := newStore(t)
	data := []byte("a blob named by sha512")
	sum := sha512.Sum512(data)
	d := digest.NewDigestFromEncoded(digest.SHA512, hex.EncodeToString(sum[:]))
	// A blob another tool wrote.
	p, err := s.Path(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadAll(d, int64(len(data)), 1<<20)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read sha512 blob: %v", err)
	}
	// Verified like any other.
	if err := flip(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(context.Background(), d, -1); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("corrupt sha512 blob: %v", err)
	}
	// Writes use sha256 unless a sha512 digest is expected.
	s2 := newStore(t)
	d2, _, err := s2.Put(context.Background(), bytes.NewReader(data), "", -1)
	if err != nil || d2.Algorithm() != digest.SHA256 {
		t.Fatalf("default algorithm: %s %v", d2, err)
	}
	d3, _, err := s2.Put(context.Background(), bytes.NewReader(data), d, int64(len(data)))
	if err != nil || d3 != d {
		t.Fatalf("expected sha512: %s %v", d3, err)
	}
}

func TestInvalidDigests(t *testing.T) {
	s := newStore(t)
	for _, d := range []digest.Digest{
		"", "sha256", "sha256:", "sha256:../../etc/passwd", "md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256:" + digest.Digest(strings.Repeat("A", 64)), "sha256:abc",
	} {
		if _, err := s.Path(d); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Path(%q): %v", d, err)
		}
		if _, err := s.Open(d, -1); !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("Open(%q): %v", d, err)
		}
		if _, err := s.NewWriter(WithExpected(d, -1)); d != "" && !errors.Is(err, ErrInvalidDigest) {
			t.Errorf("NewWriter(%q): %v", d, err)
		}
	}
	missing := digest.FromString("missing")
	if _, err := s.Open(missing, -1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open missing: %v", err)
	}
	if _, err := s.Stat(missing); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stat missing: %v", err)
	}
	if err := s.Delete(missing); err != nil {
		t.Errorf("Delete missing: %v", err)
	}
}

func TestWalkAndDelete(t *testing.T) {
	s := newStore(t)
	want := map[digest.Digest]int64{}
	for i := range 5 {
		b := content(uint64(10+i), 100*i)
		d, err := s.PutBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		want[d] = int64(len(b))
	}
	// Junk that is not a blob is reported, not skipped silently.
	os.WriteFile(filepath.Join(s.Dir(), "sha256", "not-a-digest"), nil, 0o644)
	got := map[digest.Digest]int64{}
	bad := 0
	err := s.Walk(func(d digest.Digest, size int64, err error) error {
		if err != nil {
			bad++
			return nil
		}
		got[d] = size
		return nil
	})
	if err != nil || bad != 1 || len(got) != len(want) {
		t.Fatalf("walk: %v, %d bad, %d blobs", err, bad, len(got))
	}
	for d, n := range want {
		if got[d] != n {
			t.Errorf("%s: size %d, want %d", d, got[d], n)
		}
		if err := s.Delete(d); err != nil {
			t.Fatal(err)
		}
		if s.Has(d, -1) {
			t.Errorf("%s still there", d)
		}
	}
}

func TestCleanStaging(t *testing.T) {
	s := newStore(t)
	live, err := s.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	live.Write([]byte("in progress"))
	// What a killed process leaves: an unlocked staging file.
	stale := filepath.Join(s.StagingDir(), "ingest-stale")
	if err := os.WriteFile(stale, []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	// And a symbolic link, which no writer makes.
	if err := os.Symlink("/nonexistent", filepath.Join(s.StagingDir(), "ingest-link")); err != nil {
		t.Fatal(err)
	}
	n, err := s.CleanStaging()
	if err != nil || n != 2 {
		t.Fatalf("CleanStaging: %d %v", n, err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("stale staging file kept")
	}
	if got := stagingFiles(t, s); len(got) != 1 {
		t.Errorf("staging after clean: %v, want only the live writer's file", got)
	}
	live.Write([]byte(" and done"))
	if _, _, err := live.Commit(); err != nil {
		t.Fatalf("live writer broken by CleanStaging: %v", err)
	}
}

// Writers and staging cleaners running at once: every commit succeeds and
// every blob is intact.
func TestConcurrentWritersAndCleaner(t *testing.T) {
	s := newStore(t)
	const writers, blobs = 4, 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				s.CleanStaging()
			}
		}
	}()
	errs := make(chan error, writers*blobs)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range blobs {
				// Half the blobs are shared by all writers.
				seed := uint64(1000 + i)
				if i%2 == 1 {
					seed += uint64(w) * 100000
				}
				b := content(seed, 1000+i*37)
				d, err := s.PutBytes(b)
				if err != nil {
					errs <- fmt.Errorf("writer %d blob %d: %w", w, i, err)
					continue
				}
				if err := s.Verify(context.Background(), d, int64(len(b))); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCopyFrom(t *testing.T) {
	dir := t.TempDir()
	src := New(filepath.Join(dir, "a", "blobs"), filepath.Join(dir, "a", "staging"))
	dst := New(filepath.Join(dir, "b", "blobs"), filepath.Join(dir, "b", "staging"))
	data := content(5, 300000)
	d, err := src.PutBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dst.CopyFrom(context.Background(), src, d, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if m == CopyExisted {
		t.Fatalf("method %s", m)
	}
	if err := dst.Verify(context.Background(), d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if m, err := dst.CopyFrom(context.Background(), src, d, int64(len(data))); err != nil || m != CopyExisted {
		t.Fatalf("second copy: %s %v", m, err)
	}
	// A damaged (truncated) copy at the destination is replaced.
	dp, _ := dst.Path(d)
	os.Remove(dp)
	os.WriteFile(dp, data[:1000], 0o444)
	if _, err := dst.CopyFrom(context.Background(), src, d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := dst.Verify(context.Background(), d, int64(len(data))); err != nil {
		t.Fatalf("damaged destination not repaired: %v", err)
	}
	// A corrupt source is refused whatever the method.
	bad := content(6, 5000)
	bd, _ := src.PutBytes(bad)
	p, _ := src.Path(bd)
	if err := flip(p, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.CopyFrom(context.Background(), src, bd, int64(len(bad))); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("corrupt source: %v", err)
	}
	if dst.Has(bd, -1) {
		t.Error("corrupt blob copied")
	}
	// Across stores that cannot link (the stream path).
	other := New(filepath.Join(t.TempDir(), "blobs"), filepath.Join(t.TempDir(), "staging"))
	if _, err := other.CopyFrom(context.Background(), src, d, -1); err != nil {
		t.Fatal(err)
	}
	if err := other.Verify(context.Background(), d, int64(len(data))); err != nil {
		t.Fatal(err)
	}
}

func flip(p string, off int64) error {
	if err := os.Chmod(p, 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		return err
	}
	b[0] ^= 0x40
	_, err = f.WriteAt(b, off)
	return err
}

// truncate cuts a blob (mode 0444: only root may write it as it is) to
// size.
func truncate(p string, size int64) error {
	if err := os.Chmod(p, 0o644); err != nil {
		return err
	}
	return os.Truncate(p, size)
}

func appendTo(p string, b []byte) error {
	if err := os.Chmod(p, 0o644); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(b)
	return err
}
