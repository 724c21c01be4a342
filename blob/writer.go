package blob

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/internal/safedir"
	"golang.org/x/sys/unix"
)

// Writer streams one blob into the store. Bytes are hashed as they are
// written; Commit verifies them and renames the blob into place. A Writer
// that is closed without a successful Commit removes its staging file.
type Writer struct {
	s        *Store
	f        *os.File
	dir      *os.File // the staging directory, which holds f as name
	name     string
	path     string
	h        hash.Hash
	alg      digest.Algorithm
	n        int64
	want     digest.Digest
	wantSize int64
	done     bool
}

// WriteOption configures a Writer.
type WriteOption func(*Writer)

// WithExpected makes Commit verify the written bytes against digest d and,
// when size >= 0, against size. The digest's algorithm is used for hashing.
// Writing past size fails at once instead of at Commit.
func WithExpected(d digest.Digest, size int64) WriteOption {
	return func(w *Writer) {
		w.want = d
		w.wantSize = size
	}
}

// NewWriter starts a blob write. Call Commit to publish it and Close in
// every case (Close after Commit is a no-op).
func (s *Store) NewWriter(opts ...WriteOption) (*Writer, error) {
	w := &Writer{s: s, wantSize: -1, alg: digest.Canonical}
	for _, o := range opts {
		o(w)
	}
	if w.want != "" {
		if err := validate(w.want); err != nil {
			return nil, err
		}
		w.alg = w.want.Algorithm()
	}
	dir, err := s.makeDir(s.staging)
	if err != nil {
		return nil, fmt.Errorf("create staging directory: %w", err)
	}
	for attempt := 0; ; attempt++ {
		w.name = randomName("ingest-")
		w.path = filepath.Join(s.staging, w.name)
		f, err := safedir.OpenAt(dir, w.name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			dir.Close()
			return nil, fmt.Errorf("create staging file in %s: %w", s.staging, err)
		}
		// The lock tells gc that this staging file is alive.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			_ = unix.Unlinkat(int(dir.Fd()), w.name, 0)
			dir.Close()
			return nil, fmt.Errorf("lock staging file %s: %w", w.path, err)
		}
		// CleanStaging may have locked and removed the file between its
		// creation and our lock; then we hold a lock on an unlinked file
		// and must start over with a new one.
		if alive, err := stillLinked(f, dir, w.name); err != nil {
			f.Close()
			dir.Close()
			return nil, fmt.Errorf("check staging file %s: %w", w.path, err)
		} else if !alive {
			f.Close()
			if attempt >= 8 {
				dir.Close()
				return nil, fmt.Errorf("create staging file in %s: removed by a concurrent clean %d times", s.staging, attempt+1)
			}
			continue
		}
		w.f = f
		w.dir = dir
		w.h = w.alg.Hash()
		return w, nil
	}
}

// stillLinked reports whether name in dir still names the open file f.
func stillLinked(f, dir *os.File, name string) (bool, error) {
	var fst, pst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		return false, err
	}
	err := unix.Fstatat(int(dir.Fd()), name, &pst, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return fst.Dev == pst.Dev && fst.Ino == pst.Ino, nil
}

// Write hashes and stores p.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("blob writer: write after commit or close")
	}
	if w.wantSize >= 0 && w.n+int64(len(p)) > w.wantSize {
		return 0, fmt.Errorf("blob %s: %w: more than the expected %d bytes", w.want, ErrSizeMismatch, w.wantSize)
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// ReadFrom copies r into the blob with a large buffer.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) { return copyChunks(w, r) }

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Digest is the digest of the bytes written so far.
func (w *Writer) Digest() digest.Digest { return digest.NewDigest(w.alg, w.h) }

// Commit verifies the written bytes against the expected digest and size
// (if any), then fsyncs and renames the blob into place and fsyncs its
// directory. It returns the blob's digest and size. If the blob already
// exists, the staging file is dropped and Commit succeeds: two writers of
// one blob both succeed.
func (w *Writer) Commit() (digest.Digest, int64, error) {
	if w.done {
		return "", 0, errors.New("blob writer: commit after commit or close")
	}
	got := w.Digest()
	if w.wantSize >= 0 && w.n != w.wantSize {
		w.Close()
		return "", 0, fmt.Errorf("blob %s: %w: expected %d bytes, got %d", w.want, ErrSizeMismatch, w.wantSize, w.n)
	}
	if w.want != "" && got != w.want {
		w.Close()
		return "", 0, fmt.Errorf("%w: expected %s, got %s", ErrDigestMismatch, w.want, got)
	}
	if err := validate(got); err != nil {
		w.Close()
		return "", 0, err
	}
	if w.s.Has(got, w.n) {
		w.Close()
		return got, w.n, nil
	}
	if err := w.f.Sync(); err != nil {
		w.Close()
		return "", 0, fmt.Errorf("sync blob %s: %w", got, err)
	}
	dst := algDir(w.s.dir, got)
	dir, err := w.s.makeDir(dst)
	if err != nil {
		w.Close()
		return "", 0, fmt.Errorf("create %s: %w", dst, err)
	}
	defer dir.Close()
	// Blobs are immutable: make that visible in their mode.
	_ = w.f.Chmod(0o444)
	// Both ends are directory descriptors opened without following links:
	// the rename lands in this store's blob directory and nowhere else.
	if err := unix.Renameat(int(w.dir.Fd()), w.name, int(dir.Fd()), got.Encoded()); err != nil {
		w.Close()
		return "", 0, fmt.Errorf("publish blob %s: %w", got, err)
	}
	w.done = true
	w.dir.Close()
	w.s.notePublished(got)
	// The content was hashed on its way in: seal the published file (its
	// identity after the rename, which moves the ctime).
	w.s.sealFile(got, w.f, fileIdentity(w.f))
	w.f.Close()
	if err := syncDir(dir); err != nil {
		return "", 0, fmt.Errorf("sync %s: %w", dst, err)
	}
	return got, w.n, nil
}

// Close abandons an uncommitted write and removes its staging file.
func (w *Writer) Close() error {
	if w.done {
		return nil
	}
	w.done = true
	err := w.f.Close()
	if rerr := unix.Unlinkat(int(w.dir.Fd()), w.name, 0); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
		err = rerr
	}
	w.dir.Close()
	return err
}

// Put writes r into the store and returns its digest and size. When d is
// not empty the content is verified against d (and size, when >= 0); if a
// blob with that digest and size already exists, r is not read at all.
// Cancelling ctx stops the write within a megabyte; nothing is stored.
func (s *Store) Put(ctx context.Context, r io.Reader, d digest.Digest, size int64) (digest.Digest, int64, error) {
	if err := ctx.Err(); err != nil {
		return "", 0, err
	}
	if d != "" {
		if err := validate(d); err != nil {
			return "", 0, err
		}
		if n, err := s.Stat(d); err == nil && (size < 0 || n == size) {
			return d, n, nil
		}
	}
	var opts []WriteOption
	if d != "" {
		opts = append(opts, WithExpected(d, size))
	}
	w, err := s.NewWriter(opts...)
	if err != nil {
		return "", 0, err
	}
	defer w.Close()
	if _, err := w.ReadFrom(ctxio.Reader(ctx, r)); err != nil {
		return "", 0, fmt.Errorf("write blob %s: %w", nameOr(d), err)
	}
	return w.Commit()
}

// PutBytes stores b and returns its digest.
func (s *Store) PutBytes(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	if s.Has(d, int64(len(b))) {
		return d, nil
	}
	w, err := s.NewWriter(WithExpected(d, int64(len(b))))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := w.Write(b); err != nil {
		return "", fmt.Errorf("write blob %s: %w", d, err)
	}
	_, _, err = w.Commit()
	return d, err
}

func nameOr(d digest.Digest) string {
	if d == "" {
		return "(new)"
	}
	return d.String()
}
