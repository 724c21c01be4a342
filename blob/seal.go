package blob

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/safedir"
	"golang.org/x/sys/unix"
)

// A seal records that the file of a blob was verified (hashed, or written
// through a hashing writer) and which inode it was then: device, inode
// number, link count, size, mtime and ctime. A file that still has that
// identity has not been written since: a write or truncation moves the
// mtime (and the size, often), a replacement changes the inode, and
// chmod, chown, xattrs or utimes move the ctime, which no program can set
// back. The one allowance is a changed link count, which also moves the
// ctime: copies link blobs and a removed copy unlinks them, and neither
// touches the content. So a seal holds when inode, size and mtime are the
// same and the ctime is the same unless the link count changed.
// CopyFrom uses seals to link a blob within one file system without
// hashing it again: no byte moves, and the new name shares an inode whose
// content was verified.
//
// Seals are a cache. A missing, unreadable or stale seal only means the
// blob is hashed again; they are written without fsync and removed with
// their blob. What they cannot see is damage that keeps the mtime: media
// corruption below the file system, or a deliberate write followed by
// utimes and a link. `strata fsck` hashes every blob whatever its seal
// says (and reseals what passes).

// Option configures a Store.
type Option func(*Store)

// WithSeals keeps seals in dir (dir/<alg>/<hex>). Without it the store
// neither writes nor trusts seals and every CopyFrom hashes.
func WithSeals(dir string) Option {
	return func(s *Store) { s.seals = dir }
}

// identity is what a seal records of a blob's file.
type identity struct {
	dev, ino     uint64
	nlink        uint64
	size         int64
	mtime, ctime int64 // nanoseconds since the epoch
}

func identityOf(st *unix.Stat_t) identity {
	return identity{
		dev:   uint64(st.Dev),
		ino:   st.Ino,
		nlink: uint64(st.Nlink),
		size:  st.Size,
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}

// matches reports whether a file that was sealed with identity a can only
// be unwritten now that it has identity b: the same inode, size and mtime,
// and the same ctime unless its link count changed, since adding or
// removing a name (a copy, a gc of another layout) moves the ctime too.
func (a identity) matches(b identity) bool {
	return a.sameContent(b) && (a.ctime == b.ctime || a.nlink != b.nlink)
}

// sameContent reports whether two identities can only be the same,
// unwritten file: everything but the ctime, which a new link moves.
func (a identity) sameContent(b identity) bool {
	return a.dev == b.dev && a.ino == b.ino && a.size == b.size && a.mtime == b.mtime
}

const sealVersion = "strata-seal-1"

func (id identity) encode() string {
	return fmt.Sprintf("%s %d %d %d %d %d %d\n", sealVersion, id.dev, id.ino, id.nlink, id.size, id.mtime, id.ctime)
}

func parseIdentity(s string) (identity, error) {
	bad := errors.New("malformed seal")
	f := strings.Fields(s)
	if len(f) != 7 || f[0] != sealVersion {
		return identity{}, bad
	}
	var u [3]uint64 // dev, ino, nlink
	for i := range u {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return identity{}, bad
		}
		u[i] = v
	}
	var n [3]int64 // size, mtime, ctime
	for i := range n {
		v, err := strconv.ParseInt(f[i+4], 10, 64)
		if err != nil {
			return identity{}, bad
		}
		n[i] = v
	}
	if n[0] < 0 {
		return identity{}, bad
	}
	return identity{dev: u[0], ino: u[1], nlink: u[2], size: n[0], mtime: n[1], ctime: n[2]}, nil
}

// sealPath is where blob d's seal lives.
func (s *Store) sealPath(d digest.Digest) string {
	return filepath.Join(algDir(s.seals, d), d.Encoded())
}

// statBlob returns the identity of blob d's file as it is now.
func (s *Store) statBlob(d digest.Digest) (identity, error) {
	st, err := s.lstat(d)
	if err != nil {
		return identity{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return identity{}, fmt.Errorf("blob %s: not a regular file", d)
	}
	return identityOf(st), nil
}

// maxSeal bounds what is read of a seal file: a real one is under 100
// bytes.
const maxSeal = 512

// sealed reports whether blob d has a seal matching its file exactly, and
// the file's identity.
func (s *Store) sealed(d digest.Digest, size int64) (identity, bool) {
	if s.seals == "" {
		return identity{}, false
	}
	id, err := s.statBlob(d)
	if err != nil || (size >= 0 && id.size != size) {
		return identity{}, false
	}
	dir, err := s.openDir(algDir(s.seals, d))
	if err != nil {
		return identity{}, false
	}
	defer dir.Close()
	f, err := safedir.OpenAt(dir, d.Encoded(), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return identity{}, false
	}
	defer f.Close()
	b := make([]byte, maxSeal)
	n, _ := io.ReadFull(f, b)
	rec, err := parseIdentity(string(b[:n]))
	if err != nil || !rec.matches(id) {
		return identity{}, false
	}
	return id, true
}

// seal records id for blob d. Failing to is harmless (the blob is hashed
// next time), so errors are dropped: a read-only source layout still
// copies.
func (s *Store) seal(d digest.Digest, id identity) {
	if s.seals == "" {
		return
	}
	dir, err := s.makeDir(algDir(s.seals, d))
	if err != nil {
		return
	}
	defer dir.Close()
	tmp := randomName(".seal-")
	f, err := safedir.OpenAt(dir, tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return
	}
	_, err = f.WriteString(id.encode())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil || unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), d.Encoded()) != nil {
		_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
	}
}

// unseal drops blob d's seal.
func (s *Store) unseal(d digest.Digest) {
	if s.seals == "" {
		return
	}
	dir, err := s.openDir(algDir(s.seals, d))
	if err != nil {
		return
	}
	defer dir.Close()
	_ = unix.Unlinkat(int(dir.Fd()), d.Encoded(), 0)
}

// sealFile seals blob d after its content was verified through f, if f is
// still the file at d's path and unchanged since before (taken before the
// content was read).
func (s *Store) sealFile(d digest.Digest, f *os.File, before identity) {
	if s.seals == "" {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return
	}
	now := identityOf(&st)
	if now != before {
		return
	}
	if at, err := s.statBlob(d); err != nil || at != now {
		return
	}
	s.seal(d, now)
}

// fileIdentity is f's identity, or the zero identity (which matches no
// file) when it cannot be read.
func fileIdentity(f *os.File) identity {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return identity{}
	}
	return identityOf(&st)
}
