// Package blob is a content-addressed store laid out as an OCI image layout's
// blobs directory (blobs/<algorithm>/<hex>).
//
// Writes stream through a hash into a private staging file on the same
// filesystem; a blob becomes visible only by an atomic rename of a fully
// written and fsynced file, followed by an fsync of its directory. Reads are
// verified: a reader returns an error instead of io.EOF when the bytes it
// produced do not match the expected digest and size.
package blob

import (
	"crypto/rand"
	_ "crypto/sha256" // register sha256 with go-digest
	_ "crypto/sha512" // sha512 blobs are readable
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Sentinel errors. Errors returned by this package wrap one of these where
// it applies, so callers can test them with errors.Is.
var (
	// ErrNotFound means the store has no blob with the requested digest.
	ErrNotFound = errors.New("blob not found")
	// ErrDigestMismatch means the content hashes to another digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrSizeMismatch means the content has another size than expected.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrInvalidDigest means a digest string is malformed or uses an
	// algorithm this store does not know.
	ErrInvalidDigest = errors.New("invalid digest")
)

// Store is a content-addressed blob store. The zero value is not usable;
// create one with New. A Store is safe for concurrent use by several
// goroutines and several processes.
type Store struct {
	dir     string
	staging string
	seals   string // "" when seals are off; see seal.go
	// published, when set, is told of every blob this Store put in
	// place (not of those it found there).
	published func(digest.Digest)
}

// WithPublished makes the store call fn with the digest of every blob it
// puts in place itself: a write that finds its blob present already, or a
// copy of a blob the store holds, does not call it. A layout uses it to
// know which blobs a failed command may take back.
func WithPublished(fn func(digest.Digest)) Option {
	return func(s *Store) { s.published = fn }
}

func (s *Store) notePublished(d digest.Digest) {
	if s.published != nil {
		s.published(d)
	}
}

// New returns a store whose blobs live under dir (dir/<alg>/<hex>) and whose
// in-progress writes live in staging. Both must be on one filesystem so that
// a finished write can be renamed into place. Neither directory is created
// until the first write.
func New(dir, staging string, opts ...Option) *Store {
	s := &Store{dir: dir, staging: staging}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Dir is the directory that holds the blobs.
func (s *Store) Dir() string { return s.dir }

// StagingDir is the directory that holds in-progress writes.
func (s *Store) StagingDir() string { return s.staging }

// Validate checks that d is well formed and uses a known algorithm.
func Validate(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidDigest, d, err)
	}
	return nil
}

// Path is where the blob with digest d lives (whether or not it exists).
func (s *Store) Path(d digest.Digest) (string, error) {
	if err := Validate(d); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, d.Algorithm().String(), d.Encoded()), nil
}

// Stat returns the size of blob d, or an error wrapping ErrNotFound.
func (s *Store) Stat(d digest.Digest) (int64, error) {
	p, err := s.Path(d)
	if err != nil {
		return 0, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return 0, fmt.Errorf("blob %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("blob %s: not a regular file (%s)", d, fi.Mode().Type())
	}
	return fi.Size(), nil
}

// Has reports whether blob d exists, with the given size when size >= 0.
func (s *Store) Has(d digest.Digest, size int64) bool {
	n, err := s.Stat(d)
	return err == nil && (size < 0 || n == size)
}

// Delete removes blob d. Deleting a blob that does not exist is not an error.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	// The seal goes first: a seal without its blob is harmless, but one
	// left behind could in theory meet a new file with the same identity.
	s.unseal(d)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every blob in the store whose file name is a valid
// digest of a known algorithm; other files are passed to fn with an
// ErrInvalidDigest error so that a checker can report them. Walk stops at
// the first error fn returns.
func (s *Store) Walk(fn func(d digest.Digest, size int64, err error) error) error {
	algs, err := os.ReadDir(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read %s: %w", s.dir, err)
	}
	for _, a := range algs {
		if !a.IsDir() {
			if err := fn("", 0, fmt.Errorf("%w: unexpected file %s in %s", ErrInvalidDigest, a.Name(), s.dir)); err != nil {
				return err
			}
			continue
		}
		sub := filepath.Join(s.dir, a.Name())
		ents, err := os.ReadDir(sub)
		if err != nil {
			return fmt.Errorf("read %s: %w", sub, err)
		}
		for _, e := range ents {
			d := digest.NewDigestFromEncoded(digest.Algorithm(a.Name()), e.Name())
			if verr := Validate(d); verr != nil {
				if err := fn(d, 0, verr); err != nil {
					return err
				}
				continue
			}
			fi, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed while walking
				}
				return fmt.Errorf("stat blob %s: %w", d, err)
			}
			if !fi.Mode().IsRegular() {
				if err := fn(d, 0, fmt.Errorf("blob %s: not a regular file (%s)", d, fi.Mode().Type())); err != nil {
					return err
				}
				continue
			}
			if err := fn(d, fi.Size(), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// CleanStaging removes staging files that no live writer holds, which are
// what a killed process leaves behind. It returns how many it removed.
func (s *Store) CleanStaging() (int, error) {
	ents, err := os.ReadDir(s.staging)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read staging %s: %w", s.staging, err)
	}
	removed := 0
	for _, e := range ents {
		p := filepath.Join(s.staging, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			// A symbolic link is never a writer's file. Anything else we
			// cannot open (another user's file) may be alive: keep it.
			if errors.Is(err, unix.ELOOP) && os.Remove(p) == nil {
				removed++
			}
			continue
		}
		// A live writer holds an exclusive lock on its staging file for as
		// long as it writes; a file we can lock belongs to nobody.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		if err := os.Remove(p); err == nil {
			removed++
		}
		f.Close()
	}
	return removed, nil
}

// syncDir fsyncs a directory so that a rename or create in it is durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func randomName(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// mkdirAllSynced creates dir and fsyncs its parent when it had to create it,
// so the new directory entry survives a crash.
func mkdirAllSynced(dir string) error {
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}
