package build

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// rootlessXattr keeps an owner the process cannot give a file (umoci's
// format, read back by commit).
const rootlessXattr = "user.rootlesscontainers"

// writer gives files written into a bundle's rootfs their image owners,
// as the bundle's snapshots carry them: as they are (root), the IDs of
// strata's namespace, or the user's own with the owner in the xattr.
type writer struct {
	// m maps image IDs to the IDs this process gives files; nil: as
	// they are.
	m *ids.Map
}

func (b *builder) writer(st *stage) *writer {
	so := b.o.Store.Options()
	m, err := so.Writer(so.Owners())
	if err != nil {
		return &writer{}
	}
	return &writer{m: m}
}

// owner returns the IDs a file of image owner uid:gid gets and the xattr
// it needs (nil: none).
func (w *writer) owner(uid, gid int) (int, int, []byte) {
	if w.m == nil {
		return uid, gid, nil
	}
	hu, okU := ids.Lookup(w.m.UIDs, uid)
	hg, okG := ids.Lookup(w.m.GIDs, gid)
	if okU && okG {
		return hu, hg, nil
	}
	ru, _ := ids.Lookup(w.m.UIDs, 0)
	rg, _ := ids.Lookup(w.m.GIDs, 0)
	return ru, rg, layer.EncodeRootless(uid, gid)
}

// own sets the owner and, after it (chown clears set-id bits), the mode of
// the open file fd.
func (w *writer) own(fd int, name string, uid, gid int, mode uint32, symlink bool) error {
	hu, hg, x := w.owner(uid, gid)
	if err := unix.Fchown(fd, hu, hg); err != nil {
		return &os.PathError{Op: "chown", Path: name, Err: err}
	}
	if symlink {
		return nil
	}
	if x != nil {
		if err := unix.Fsetxattr(fd, rootlessXattr, x, 0); err != nil {
			return &os.PathError{Op: "setxattr", Path: name, Err: err}
		}
	} else if w.m != nil {
		_ = unix.Fremovexattr(fd, rootlessXattr)
	}
	if err := unix.Fchmod(fd, mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	return nil
}

// fixDir gives the directory p of t its mode, owner and, when mtime is
// set, times.
func (w *writer) fixDir(t *fsx.Tree, p string, mode uint32, uid, gid int, mtime *time.Time) error {
	fd, err := t.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := w.own(fd, p, uid, gid, mode, false); err != nil {
		return err
	}
	if mtime != nil {
		ts := unix.NsecToTimespec(mtime.UnixNano())
		return fsx.Futimens(fd, &[2]unix.Timespec{ts, ts})
	}
	return nil
}

// node is one thing a copy writes: its type, permission bits, owner,
// times, link target, xattrs and, for a file, where its bytes come from.
type node struct {
	typ      uint32 // unix.S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, ...
	mode     uint32
	uid, gid int
	mtime    time.Time
	link     string
	rdev     uint64
	xattrs   map[string][]byte
	open     func() (io.ReadCloser, error)
	// hardlink names an earlier node of the same copy this one is a
	// link to (relative to the same directory tree).
	hardlink string
}

// errWhiteoutName refuses names an OCI layer would read as whiteouts.
var errWhiteoutName = errors.New("a name starting with .wh. cannot be copied into an image: layers use it for deletions")

// put writes n at name (relative to t, its parent resolved inside t,
// itself never followed), replacing what is there unless both are
// directories.
func (w *writer) put(t *fsx.Tree, name string, n *node) error {
	dir, base := path.Split(name)
	if strings.HasPrefix(base, ".wh.") {
		return fmt.Errorf("%s: %w", name, errWhiteoutName)
	}
	dfd, err := t.Dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	existed := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil
	if n.typ == unix.S_IFDIR {
		return w.putDir(t, dfd, base, name, n, existed, &st)
	}
	if existed {
		if err := fsx.RemoveAt(dfd, base); err != nil {
			return err
		}
	}
	switch n.typ {
	case unix.S_IFREG:
		return w.putFile(t, dfd, base, name, n)
	case unix.S_IFLNK:
		if err := unix.Symlinkat(n.link, dfd, base); err != nil {
			return &os.PathError{Op: "symlink", Path: name, Err: err}
		}
		hu, hg, _ := w.owner(n.uid, n.gid)
		if err := unix.Fchownat(dfd, base, hu, hg, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lchown", Path: name, Err: err}
		}
		ts := unix.NsecToTimespec(n.mtime.UnixNano())
		if err := unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "utimes", Path: name, Err: err}
		}
		return nil
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknodat(dfd, base, n.typ|0o600, int(n.rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: name, Err: err}
		}
		fd, err := unix.Openat(dfd, base, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		hu, hg, _ := w.owner(n.uid, n.gid)
		if err := unix.Fchownat(dfd, base, hu, hg, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.Fchmodat(dfd, base, n.mode&0o7777, 0)
	}
	return fmt.Errorf("%s: cannot copy a file of type %o", name, n.typ)
}

// putDir makes the directory name (base in dfd), or gives the one there
// n's metadata; a symlink to a directory is left as it is.
func (w *writer) putDir(t *fsx.Tree, dfd int, base, name string, n *node, existed bool, st *unix.Stat_t) error {
	if existed && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return w.fixDirAt(dfd, base, name, n)
	}
	if existed && st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// A symlink to a directory stays: what is copied into it goes
		// where it leads, as BuildKit copies.
		var ts unix.Stat_t
		if sfd, err := t.Open(name, unix.O_PATH, 0); err == nil {
			err = unix.Fstat(sfd, &ts)
			unix.Close(sfd)
			if err == nil && ts.Mode&unix.S_IFMT == unix.S_IFDIR {
				return nil
			}
		}
	}
	if existed {
		if err := fsx.RemoveAt(dfd, base); err != nil {
			return err
		}
	}
	if err := unix.Mkdirat(dfd, base, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	return w.fixDirAt(dfd, base, name, n)
}

// putFile writes the regular file (or hard link) name, base in dfd,
// where nothing is.
func (w *writer) putFile(t *fsx.Tree, dfd int, base, name string, n *node) error {
	if n.hardlink != "" {
		odir, obase := path.Split(n.hardlink)
		ofd, err := t.Dir(strings.TrimSuffix(odir, "/"))
		if err != nil {
			return err
		}
		err = unix.Linkat(ofd, obase, dfd, base, 0)
		unix.Close(ofd)
		if err != nil {
			return &os.PathError{Op: "link", Path: name, Err: err}
		}
		return nil
	}
	fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "create", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if n.open != nil {
		r, err := n.open()
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		r.Close()
		if err != nil {
			return fmt.Errorf("copy %s: %w", name, err)
		}
	}
	return w.finish(fd, name, n, false)
}

// fixDirAt sets an existing directory's metadata.
func (w *writer) fixDirAt(dfd int, base, name string, n *node) error {
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	return w.finish(fd, name, n, true)
}

// finish sets xattrs, owner, mode and times of an open file.
func (w *writer) finish(fd int, name string, n *node, dir bool) error {
	for k, v := range n.xattrs {
		if err := unix.Fsetxattr(fd, k, v, 0); err != nil && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) {
			return &os.PathError{Op: "setxattr " + k, Path: name, Err: err}
		}
	}
	if err := w.own(fd, name, n.uid, n.gid, n.mode, false); err != nil {
		return err
	}
	if dir && n.mtime.IsZero() {
		return nil
	}
	ts := unix.NsecToTimespec(n.mtime.UnixNano())
	return fsx.Futimens(fd, &[2]unix.Timespec{ts, ts})
}

// copyableXattr says whether a source's xattr goes with a copy: not the
// ones strata or overlay keep their own state in.
func copyableXattr(k string) bool {
	return k != rootlessXattr && !strings.HasPrefix(k, "trusted.overlay.") && !strings.HasPrefix(k, "user.overlay.")
}
