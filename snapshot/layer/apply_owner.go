package layer

import (
	"fmt"
	"os"
	"sort"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// ownedAsCreated says whether something this process creates in dfd gets
// e's owner without a chown: as root, in a directory that hands down no
// group, when e's owner on the host is who creates it.
func (a *applier) ownedAsCreated(dfd int, e *Entry) bool {
	if dfd != a.dirs.last.fd || !a.dirs.last.plain {
		return false
	}
	if a.opts.Rootless {
		// In a user namespace, an owner it maps needs no xattr either.
		if a.opts.Owners == nil {
			return false
		}
		uid, okU := ids.Lookup(a.opts.Owners.UIDs, e.UID)
		gid, okG := ids.Lookup(a.opts.Owners.GIDs, e.GID)
		return okU && okG && uid == a.creator.uid && gid == a.creator.gid
	}
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	return err == nil && uid == a.creator.uid && gid == a.creator.gid
}

// touchParent notes that the directory holding name changed, so its
// mtime is put back at the end.
func (a *applier) touchParent(name string) {
	dir, _ := split(name)
	a.seen.dirty[dir] = true
}

// owner applies e's ownership to base in dfd (dfd -1: to name through
// the root), or with Rootless records it in RootlessXattr.
func (a *applier) owner(dfd int, name, base string, e *Entry) error {
	if dfd < 0 {
		// Only directories come this way: the root and implicit parents.
		fd, err := a.t.Open(name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return a.ownerFd(fd, "", name, e)
	}
	return a.ownerFd(dfd, base, name, e)
}

func (a *applier) ownerFd(dfd int, base, name string, e *Entry) error {
	if a.opts.Rootless {
		uid, gid := e.UID, e.GID
		if m := a.opts.Owners; m != nil {
			// The IDs the namespace maps are given; the others are
			// what it gives root, and the xattr keeps them.
			u, okU := ids.Lookup(m.UIDs, e.UID)
			g, okG := ids.Lookup(m.GIDs, e.GID)
			if !okU {
				u, okU = ids.Lookup(m.UIDs, 0)
				if !okU {
					u = -1
				}
			} else {
				uid = 0
			}
			if !okG {
				g, okG = ids.Lookup(m.GIDs, 0)
				if !okG {
					g = -1
				}
			} else {
				gid = 0
			}
			flags := unix.AT_SYMLINK_NOFOLLOW
			if base == "" {
				flags |= unix.AT_EMPTY_PATH
			}
			if err := unix.Fchownat(dfd, base, u, g, flags); err != nil {
				return &os.PathError{Op: "chown", Path: name, Err: err}
			}
		}
		if e.Type == TypeSymlink {
			return nil // no user.* xattrs on symlinks
		}
		v := EncodeRootless(uid, gid)
		var err error
		switch {
		case base == "" && v == nil:
			// dfd is a directory: following its magic link reaches it.
			err = unix.Removexattr(fsx.FdPath(dfd), RootlessXattr)
		case base == "":
			err = unix.Setxattr(fsx.FdPath(dfd), RootlessXattr, v, 0)
		case v == nil:
			err = unix.Lremovexattr(fsx.ProcPath(dfd, base), RootlessXattr)
		default:
			err = unix.Lsetxattr(fsx.ProcPath(dfd, base), RootlessXattr, v, 0)
		}
		if err == unix.ENODATA {
			err = nil
		}
		if err == unix.EPERM && e.Type != TypeDir && e.Type != TypeReg && !e.Placeholder {
			// The kernel allows user.* xattrs only on files and
			// directories: the file list keeps a fifo's owner.
			err = nil
		}
		if err != nil && err != unix.ENOTSUP {
			return &os.PathError{Op: "set owner xattr", Path: name, Err: err}
		}
		return nil
	}
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", name, err)
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dfd, base, uid, gid, flags); err != nil {
		return &os.PathError{Op: "chown", Path: name, Err: err}
	}
	return nil
}

// xattrs sets e's extended attributes on the open file fd, or on base in
// dfd (base "": dfd itself).
func (a *applier) xattrs(fd, dfd int, base string, e *Entry) error {
	for _, k := range sortedKeys(e.Xattrs) {
		if k == RootlessXattr && a.opts.Rootless {
			continue
		}
		name := k
		if a.opts.XattrName != nil {
			name = a.opts.XattrName(k)
		}
		var err error
		switch {
		case fd >= 0:
			err = unix.Fsetxattr(fd, name, e.Xattrs[k], 0)
		case base == "":
			// dfd is a directory (the root): its magic link reaches it.
			err = unix.Setxattr(fsx.FdPath(dfd), name, e.Xattrs[k], 0)
		default:
			err = unix.Lsetxattr(fsx.ProcPath(dfd, base), name, e.Xattrs[k], 0)
		}
		if err == nil {
			continue
		}
		// Unprivileged users cannot set security.* or trusted.*, nor
		// user.* on symlinks and devices: the file list keeps them.
		if a.opts.Rootless && (err == unix.EPERM || err == unix.EACCES || err == unix.ENOTSUP) {
			continue
		}
		return &os.PathError{Op: "setxattr " + k, Path: e.Path, Err: err}
	}
	return nil
}

func clearXattrs(dfd int, base string, keepOpaque bool) error {
	p := fsx.ProcPath(dfd, base)
	names, err := fsx.ListXattrs(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		// A directory listed again after its opaque marker (the marker
		// may come anywhere in the layer) stays opaque.
		if keepOpaque && (n == "trusted.overlay.opaque" || n == "user.overlay.opaque") {
			continue
		}
		if err := unix.Lremovexattr(p, n); err != nil && err != unix.ENODATA && err != unix.EPERM {
			return fmt.Errorf("remove xattr %s: %w", n, err)
		}
	}
	return nil
}

func setTimes(dfd int, base string, mtime int64) error {
	ts := unix.NsecToTimespec(mtime)
	if err := unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "chtimes", Path: base, Err: err}
	}
	return nil
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
