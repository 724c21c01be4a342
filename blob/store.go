// Package blob is a content-addressed store laid out as an OCI image layout's
// blobs directory (blobs/<algorithm>/<hex>).
//
// Writes stream through a hash into a private staging file on the same
// filesystem; a blob becomes visible only by an atomic rename of a fully
// written and fsynced file, followed by an fsync of its directory. Reads are
// verified: a reader returns an error instead of io.EOF when the bytes it
// produced do not match the expected digest and size.
//
// The store follows no symbolic link below its root (see WithRoot): every
// directory and file is opened relative to its parent's descriptor with
// O_NOFOLLOW, and files are created, renamed, linked and removed relative
// to those descriptors, so a store whose directories were replaced by
// links to elsewhere is refused (ErrSymlink) instead of written through.
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
	"github.com/strata-oci/strata/internal/safedir"
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
	// ErrSymlink means one of the store's directories or files is a
	// symbolic link, which the store refuses to follow. The error is a
	// *LinkError naming the link.
	ErrSymlink = safedir.ErrSymlink
)

// LinkError names a symbolic link the store refused to follow; it matches
// ErrSymlink.
type LinkError = safedir.LinkError

// Store is a content-addressed blob store. The zero value is not usable;
// create one with New. A Store is safe for concurrent use by several
// goroutines and several processes.
type Store struct {
	root    string // "" when each directory is its own root
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
// until the first write. Without WithRoot, dir, staging and the seal
// directory are each opened as given and no link below them is followed.
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

// validate checks that d is well formed and uses a known algorithm.
func validate(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidDigest, d, err)
	}
	return nil
}

// Path is where the blob with digest d lives (whether or not it exists).
func (s *Store) Path(d digest.Digest) (string, error) {
	if err := validate(d); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, d.Algorithm().String(), d.Encoded()), nil
}

// WithRoot confines the store to root: dir, staging and the seal
// directory lie below it, root itself is opened as given, and no link
// between root and any file of the store is followed (a layout's blobs/,
// blobs/sha256 and .strata/staging, say). A directory not below root is
// its own root.
func WithRoot(root string) Option {
	return func(s *Store) { s.root = filepath.Clean(root) }
}

// split returns the root p is opened from and p relative to it.
func (s *Store) split(p string) (root, rel string) {
	if s.root != "" {
		if r, err := filepath.Rel(s.root, p); err == nil && filepath.IsLocal(r) {
			return s.root, r
		}
	}
	for _, base := range []string{s.dir, s.staging, s.seals} {
		if base == "" {
			continue
		}
		if r, err := filepath.Rel(base, p); err == nil && (r == "." || filepath.IsLocal(r)) {
			return base, r
		}
	}
	return p, "."
}

// openDir opens directory p of the store without following links below
// its root.
func (s *Store) openDir(p string) (*os.File, error) {
	root, rel := s.split(p)
	return safedir.Open(root, rel)
}

// makeDir is openDir that creates what is missing of p.
func (s *Store) makeDir(p string) (*os.File, error) {
	root, rel := s.split(p)
	return safedir.MkdirAll(root, rel, 0o755)
}

// algDir is the directory of d's algorithm, below dir.
func algDir(dir string, d digest.Digest) string {
	return filepath.Join(dir, d.Algorithm().String())
}

// Stat returns the size of blob d, or an error wrapping ErrNotFound.
func (s *Store) Stat(d digest.Digest) (int64, error) {
	st, err := s.lstat(d)
	if err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		p, _ := s.Path(d)
		return 0, fmt.Errorf("blob %s: %w", d, &LinkError{Path: p})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("blob %s: not a regular file (mode %o)", d, st.Mode)
	}
	return st.Size, nil
}

// lstat stats blob d's file without following it.
func (s *Store) lstat(d digest.Digest) (*unix.Stat_t, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	dir, err := s.openDir(algDir(s.dir, d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), d.Encoded(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	return &st, nil
}

// Has reports whether blob d exists, with the given size when size >= 0.
func (s *Store) Has(d digest.Digest, size int64) bool {
	n, err := s.Stat(d)
	return err == nil && (size < 0 || n == size)
}

// Delete removes blob d. Deleting a blob that does not exist is not an error.
func (s *Store) Delete(d digest.Digest) error {
	if err := validate(d); err != nil {
		return err
	}
	// The seal goes first: a seal without its blob is harmless, but one
	// left behind could in theory meet a new file with the same identity.
	s.unseal(d)
	dir, err := s.openDir(algDir(s.dir, d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	defer dir.Close()
	// unlinkat removes a link itself, never what it points to.
	if err := unix.Unlinkat(int(dir.Fd()), d.Encoded(), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every blob in the store whose file name is a valid
// digest of a known algorithm; other files are passed to fn with an
// ErrInvalidDigest error so that a checker can report them. Walk stops at
// the first error fn returns.
func (s *Store) Walk(fn func(d digest.Digest, size int64, err error) error) error {
	top, err := s.openDir(s.dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read %s: %w", s.dir, err)
	}
	defer top.Close()
	algs, err := top.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", s.dir, err)
	}
	for _, a := range algs {
		if a.Type()&fs.ModeSymlink != 0 {
			return &LinkError{Path: filepath.Join(s.dir, a.Name())}
		}
		if !a.IsDir() {
			if err := fn("", 0, fmt.Errorf("%w: unexpected file %s in %s", ErrInvalidDigest, a.Name(), s.dir)); err != nil {
				return err
			}
			continue
		}
		if err := s.walkAlg(top, a.Name(), fn); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) walkAlg(top *os.File, alg string, fn func(d digest.Digest, size int64, err error) error) error {
	sub, err := safedir.OpenAt(top, alg, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("read %s: %w", filepath.Join(s.dir, alg), err)
	}
	defer sub.Close()
	ents, err := sub.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("read %s: %w", sub.Name(), err)
	}
	for _, e := range ents {
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), e.Name())
		if verr := validate(d); verr != nil {
			if err := fn(d, 0, verr); err != nil {
				return err
			}
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(int(sub.Fd()), e.Name(), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed while walking
			}
			return fmt.Errorf("stat blob %s: %w", d, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			what := fmt.Errorf("blob %s: not a regular file (mode %o)", d, st.Mode)
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				what = fmt.Errorf("blob %s: %w", d, &LinkError{Path: filepath.Join(sub.Name(), e.Name())})
			}
			if err := fn(d, 0, what); err != nil {
				return err
			}
			continue
		}
		if err := fn(d, st.Size, nil); err != nil {
			return err
		}
	}
	return nil
}

// CleanStaging removes staging files that no live writer holds, which are
// what a killed process leaves behind. It returns how many it removed.
func (s *Store) CleanStaging() (int, error) {
	dir, err := s.openDir(s.staging)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("read staging %s: %w", s.staging, err)
	}
	defer dir.Close()
	ents, err := dir.ReadDir(-1)
	if err != nil {
		return 0, fmt.Errorf("read staging %s: %w", s.staging, err)
	}
	dfd := int(dir.Fd())
	removed := 0
	for _, e := range ents {
		name := e.Name()
		// O_NONBLOCK: a FIFO planted here must not hang the clean.
		f, err := safedir.OpenAt(dir, name, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			// A symbolic link is never a writer's file: the link itself
			// goes, not what it points to. Anything else we cannot open
			// (another user's file) may be alive: keep it.
			if errors.Is(err, ErrSymlink) && unix.Unlinkat(dfd, name, 0) == nil {
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
		if err := unix.Unlinkat(dfd, name, 0); err == nil {
			removed++
		}
		f.Close()
	}
	return removed, nil
}

// syncDir fsyncs an open directory so that a rename or create in it is
// durable.
func syncDir(dir *os.File) error {
	if err := dir.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

func randomName(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// OpenFile opens the file at blob d's place in the store with flag and
// perm, following no link below the store's root and creating its
// directory when flag has os.O_CREATE. It is for stores whose files are
// not finished blobs, such as partial downloads; a finished blob is read
// with Open and written with NewWriter.
func (s *Store) OpenFile(d digest.Digest, flag int, perm os.FileMode) (*os.File, error) {
	if err := validate(d); err != nil {
		return nil, err
	}
	open := s.openDir
	if flag&os.O_CREATE != 0 {
		open = s.makeDir
	}
	dir, err := open(algDir(s.dir, d))
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return safedir.OpenAt(dir, d.Encoded(), flag, perm)
}
