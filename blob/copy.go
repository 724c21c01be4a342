package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/ctxio"
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
// Cancelling ctx stops the hashing or the stream within a megabyte and
// leaves s as it was.
func (s *Store) CopyFrom(ctx context.Context, src *Store, d digest.Digest, size int64) (CopyMethod, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
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
	dir, err := s.makeDir(dstPath)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", dstPath, err)
	}
	defer dir.Close()

	if m, err := s.tryReflink(ctx, r, d, size); !errors.Is(err, errUnsupported) {
		return m, err
	}
	srcDir, err := src.openDir(algDir(src.dir, d))
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", d, err)
	}
	defer srcDir.Close()
	if sameFS(srcDir, dir) {
		m, err := s.tryHardlink(ctx, src, r, links{src: srcDir, dst: dir}, d, size)
		if !errors.Is(err, errUnsupported) {
			return m, err
		}
		// Not linkable (protected_hardlinks, a bind mount): stream it,
		// from the start.
		if r, err = src.Open(d, size); err != nil {
			return "", err
		}
		defer r.Close()
	}
	return s.stream(ctx, r, d, size)
}

// errUnsupported says a way of copying does not work here: the next one
// is tried.
var errUnsupported = errors.New("unsupported")

// tryReflink clones the source file into a staging file, verifies the
// clone, then publishes it.
func (s *Store) tryReflink(ctx context.Context, src *Reader, d digest.Digest, size int64) (CopyMethod, error) {
	w, err := s.NewWriter(WithExpected(d, size))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if err := unix.IoctlFileClone(int(w.f.Fd()), int(src.File().Fd())); err != nil {
		return "", errUnsupported
	}
	// Hash the clone: this is the verification of what becomes visible.
	vr := &Reader{f: w.f, d: d, size: size, h: d.Algorithm().Hash()}
	if _, err := w.f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	if _, err := vr.WriteTo(ctxio.Writer(ctx, io.Discard)); err != nil {
		return "", err
	}
	w.n = size
	w.h = vr.h
	if _, _, err := w.Commit(); err != nil {
		return "", err
	}
	return CopyReflink, nil
}

// links are the two blob directories a hard link is made between, both
// opened without following links.
type links struct{ src, dst *os.File }

// tryHardlink gives the source file a second name in s. The source is
// verified by its seal when it has a matching one, else hashed; either
// way its identity is taken before and checked after the link, so what
// got linked is what was verified. errUnsupported means the file cannot
// be linked.
func (s *Store) tryHardlink(ctx context.Context, src *Store, r *Reader, dirs links, d digest.Digest, size int64) (CopyMethod, error) {
	before, ok := src.sealed(d, size)
	if !ok {
		before = fileIdentity(r.File())
		if _, err := r.WriteTo(ctxio.Writer(ctx, io.Discard)); err != nil {
			if ctx.Err() == nil {
				src.unseal(d)
			}
			return "", err
		}
		if now, err := src.statBlob(d); err != nil || now != before {
			return "", fmt.Errorf("blob %s: %w: it changed while it was verified", d, ErrDigestMismatch)
		}
	}
	// A file already at dst has the wrong size (Has said no in CopyFrom),
	// so it is damaged: the stream replaces it. linkat without
	// AT_SYMLINK_FOLLOW links a link itself, never its target (statBlob
	// below refuses anything but a regular file).
	err := unix.Linkat(int(dirs.src.Fd()), d.Encoded(), int(dirs.dst.Fd()), d.Encoded(), 0)
	if err != nil {
		if errors.Is(err, fs.ErrExist) && s.Has(d, size) {
			return CopyExisted, nil // a concurrent copy won
		}
		return "", errUnsupported
	}
	after, serr := s.statBlob(d)
	if serr != nil || !after.sameContent(before) {
		_ = unix.Unlinkat(int(dirs.dst.Fd()), d.Encoded(), 0)
		return "", fmt.Errorf("blob %s: %w: it changed while it was linked", d, ErrDigestMismatch)
	}
	if err := syncDir(dirs.dst); err != nil {
		return "", fmt.Errorf("sync %s: %w", dirs.dst.Name(), err)
	}
	// One inode, one identity (the link moved its ctime).
	s.seal(d, after)
	src.seal(d, after)
	s.notePublished(d)
	return CopyHardlink, nil
}

// stream copies the blob's bytes through a verifying writer.
func (s *Store) stream(ctx context.Context, r *Reader, d digest.Digest, size int64) (CopyMethod, error) {
	w, err := s.NewWriter(WithExpected(d, size))
	if err != nil {
		return "", err
	}
	defer w.Close()
	if _, err := r.WriteTo(ctxio.Writer(ctx, w)); err != nil {
		return "", fmt.Errorf("copy blob %s: %w", d, err)
	}
	if _, _, err := w.Commit(); err != nil {
		return "", err
	}
	return CopyStream, nil
}

func sameFS(a, b *os.File) bool {
	var sa, sb unix.Stat_t
	if unix.Fstat(int(a.Fd()), &sa) != nil || unix.Fstat(int(b.Fd()), &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev
}
