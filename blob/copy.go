package blob

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// CopyMethod says how CopyFrom transferred a blob.
type CopyMethod string

// The ways CopyFrom can transfer a blob, cheapest first.
const (
	CopyExisted  CopyMethod = "existed"  // the destination already had it
	CopyReflink  CopyMethod = "reflink"  // a copy-on-write clone of the file
	CopyHardlink CopyMethod = "hardlink" // a second name for the same file
	CopyStream   CopyMethod = "copy"     // bytes read and written
)

// CopyFrom transfers blob d (of the given size, or any size when size < 0)
// from src into s. The content is always verified against d before the
// blob becomes visible in s. On one filesystem the blob is cloned with a
// reflink when the filesystem supports it (the clone is hashed), else
// hardlinked (the source is hashed, or recognised by its seal: see
// WithSeals); otherwise it is streamed through a verifying writer.
func (s *Store) CopyFrom(src *Store, d digest.Digest, size int64) (CopyMethod, error) {
	if s.Has(d, size) {
		return CopyExisted, nil
	}
	r, err := src.Open(d, size)
	if err != nil {
		return "", err
	}
	defer r.Close()
	size = r.Size()
	dstPath := algDir(s.dir, d)
	dir, err := s.openDir(dstPath, true)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", dstPath, err)
	}
	defer dir.Close()

	// Reflink: clone into a staging file, verify the clone, then publish it.
	if m, err := s.tryReflink(r.File(), d, size); err == nil {
		return m, nil
	} else if !errors.Is(err, errUnsupported) {
		return "", err
	}

	// Hardlink: a second name for a verified file. The source is verified
	// by its seal when it has a matching one, else hashed; either way its
	// identity is taken before and checked after the link, so what got
	// linked is what was verified.
	srcDir, err := src.openDir(algDir(src.dir, d), false)
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", d, err)
	}
	defer srcDir.Close()
	if sameFS(srcDir, dir) {
		before, ok := src.sealed(d, size)
		if !ok {
			before = fileIdentity(r.File())
			if _, err := r.WriteTo(io.Discard); err != nil {
				src.unseal(d)
				return "", err
			}
			if now, err := src.statBlob(d); err != nil || now != before {
				return "", fmt.Errorf("blob %s: %w: it changed while it was verified", d, ErrDigestMismatch)
			}
		}
		// A file already at dst has the wrong size (Has said no above),
		// so it is damaged: the stream below replaces it. Both names are
		// taken relative to directories opened without following links,
		// and linkat without AT_SYMLINK_FOLLOW links a link itself, never
		// its target (statBlob below refuses anything but a regular file).
		err := unix.Linkat(int(srcDir.Fd()), d.Encoded(), int(dir.Fd()), d.Encoded(), 0)
		if err == nil {
			after, serr := s.statBlob(d)
			if serr != nil || !after.sameContent(before) {
				_ = unix.Unlinkat(int(dir.Fd()), d.Encoded(), 0)
				return "", fmt.Errorf("blob %s: %w: it changed while it was linked", d, ErrDigestMismatch)
			}
			if err := syncDir(dir); err != nil {
				return "", fmt.Errorf("sync %s: %w", dstPath, err)
			}
			// One inode, one identity (the link moved its ctime).
			s.seal(d, after)
			src.seal(d, after)
			s.notePublished(d)
			return CopyHardlink, nil
		}
		if errors.Is(err, fs.ErrExist) && s.Has(d, size) {
			return CopyExisted, nil // a concurrent copy won
		}
		// Not linkable (protected_hardlinks, a bind mount): stream it.
		if r, err = src.Open(d, size); err != nil {
			return "", err
		}
		defer r.Close()
	}

	w, err := s.NewWriter(WithExpected(d, size))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := r.WriteTo(w); err != nil {
		return "", fmt.Errorf("copy blob %s: %w", d, err)
	}
	if _, _, err := w.Commit(); err != nil {
		return "", err
	}
	return CopyStream, nil
}

var errUnsupported = errors.New("unsupported")

func (s *Store) tryReflink(src *os.File, d digest.Digest, size int64) (CopyMethod, error) {
	w, err := s.NewWriter(WithExpected(d, size))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if err := unix.IoctlFileClone(int(w.f.Fd()), int(src.Fd())); err != nil {
		return "", errUnsupported
	}
	// Hash the clone: this is the verification of what becomes visible.
	vr := &Reader{f: w.f, d: d, size: size, h: d.Algorithm().Hash()}
	if _, err := w.f.Seek(0, 0); err != nil {
		return "", err
	}
	buf := make([]byte, 1<<20)
	for {
		_, err := vr.Read(buf)
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", err
		}
	}
	w.n = size
	w.h = vr.h
	if _, _, err := w.Commit(); err != nil {
		return "", err
	}
	return CopyReflink, nil
}

func sameFS(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a.Fd()), &sa) != nil || unix.Fstat(int(b.Fd()), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}
