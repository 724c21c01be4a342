package layer

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// regular writes the regular file e at base in dfd with the data r.
func (a *applier) regular(dfd int, base string, e *Entry, r io.Reader) error {
	create, fix, err := a.createMode(dfd, e)
	if err != nil {
		return err
	}
	fd, err := a.createFile(dfd, base, e, create)
	if err != nil {
		return err
	}
	// A raw descriptor: os.File would register it with the poller and
	// cost a few syscalls per file, which adds up over many small files.
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	n, err := a.writeData(fd, e, r)
	if err != nil {
		return err
	}
	if n > 0 {
		if err := a.notePayload(dfd, base, e.Path); err != nil {
			return err
		}
	}
	if err := a.fileMeta(dfd, fd, base, e, fix); err != nil {
		return err
	}
	closed = true
	if err := a.dropper.closeFile(fd, n); err != nil {
		return fmt.Errorf("write %s: %w", e.Path, err)
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return nil
}

// fileFix says what a new regular file needs after its creation.
type fileFix struct{ chown, chmod bool }

// createMode is the mode a new regular file is created with in dfd and
// what it needs after. As root, a file whose owner is ours and whose
// permissions the umask keeps is created with them: no chown, no chmod
// (a chown would clear set-id bits, so those still take both).
func (a *applier) createMode(dfd int, e *Entry) (uint32, fileFix, error) {
	if a.opts.Rootless || dfd != a.dirs.last.fd || !a.dirs.last.plain {
		return 0o600, fileFix{chown: true, chmod: true}, nil
	}
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	if err != nil {
		return 0, fileFix{}, fmt.Errorf("owner of %s: %w", e.Path, err)
	}
	if uid == a.creator.uid && gid == a.creator.gid && e.Mode&^0o777 == 0 && e.Mode&a.creator.umask == 0 {
		return e.Mode, fileFix{}, nil
	}
	return 0o600, fileFix{chown: true, chmod: true}, nil
}

// createFile creates base in dfd for the entry e. Most names are new:
// the create comes first and the name is cleared only when it is taken,
// rather than an unlink for every file. O_EXCL fails on whatever is
// there, a symlink included.
func (a *applier) createFile(dfd int, base string, e *Entry, mode uint32) (int, error) {
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dfd, base, flags, mode)
	if err == unix.EEXIST {
		if err := a.clear(dfd, base, e.Path); err != nil {
			return -1, err
		}
		fd, err = unix.Openat(dfd, base, flags, mode)
	} else if err == nil {
		// A lower layer's entry of that name (overlay) is replaced.
		a.files.deleteTree(e.Path)
	}
	if err != nil {
		return -1, &os.PathError{Op: "create", Path: e.Path, Err: err}
	}
	return fd, nil
}

// writeData writes the entry's data r into the new file fd and checks
// it is the size the entry says.
func (a *applier) writeData(fd int, e *Entry, r io.Reader) (int64, error) {
	var n int64
	var err error
	if sd, ok := r.(*sparseData); ok {
		// Only the data regions are read and written: the holes of a
		// sparse entry cost nothing, however large.
		n, err = sd.writeTo(fd, a.buf, holeBlock(fd))
		if err == nil {
			err = unix.Ftruncate(fd, n)
		}
	} else if e.Size < holeMin {
		n, err = io.CopyBuffer(fsx.FdWriter(fd), r, a.buf)
	} else {
		// Large files keep their holes (sparse entries, runs of
		// zeros): the bytes read back are the same.
		n, err = writeHoley(fd, r, 0, a.buf, holeBlock(fd))
		if err == nil {
			err = unix.Ftruncate(fd, n)
		}
	}
	if err != nil {
		return n, fmt.Errorf("write %s: %w", e.Path, err)
	}
	if n != e.Size {
		return n, fmt.Errorf("write %s: %d bytes of %d", e.Path, n, e.Size)
	}
	return n, nil
}

// fileMeta gives the new file fd (base in dfd) the entry's owner, mode,
// xattrs and times, through the open descriptor: no second lookup of
// the name.
func (a *applier) fileMeta(dfd, fd int, base string, e *Entry, fix fileFix) error {
	if a.opts.Rootless {
		if !a.ownedAsCreated(dfd, e) {
			if err := a.owner(dfd, e.Path, base, e); err != nil {
				return err
			}
		}
	} else if fix.chown {
		if err := a.chownFd(fd, e); err != nil {
			return err
		}
	}
	if fix.chmod {
		if err := unix.Fchmod(fd, e.Mode); err != nil {
			return &os.PathError{Op: "chmod", Path: e.Path, Err: err}
		}
	}
	if err := a.xattrs(fd, -1, "", e); err != nil {
		return err
	}
	ts := unix.NsecToTimespec(e.Mtime)
	if err := fsx.Futimens(fd, &[2]unix.Timespec{ts, ts}); err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	return nil
}

// chownFd gives the open file fd e's owner, shifted to the host's IDs.
func (a *applier) chownFd(fd int, e *Entry) error {
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", e.Path, err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: e.Path, Err: err}
	}
	return nil
}

func (a *applier) directory(dfd int, base string, e *Entry) error {
	// Most directories are new: make it first and look at what holds
	// the name only when it is taken. As root, in a plain directory, a
	// mode the umask keeps (with owner rwx, so the layer can fill it) is
	// given at once and finish leaves it alone.
	create := uint32(0o700)
	if !a.opts.Rootless && dfd == a.dirs.last.fd && a.dirs.last.plain && len(e.Xattrs) == 0 &&
		e.Mode&^0o777 == 0 && e.Mode&0o700 == 0o700 && e.Mode&a.creator.umask == 0 {
		create = e.Mode
	}
	existed := false
	err := unix.Mkdirat(dfd, base, create)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: e.Path, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			// An existing directory keeps its children; its metadata is
			// replaced.
			a.dirsChanged()
			existed = true
			if err := clearXattrs(dfd, base, a.opts.Whiteouts == WhiteoutConvert); err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
		} else {
			if err := a.clear(dfd, base, e.Path); err != nil {
				return err
			}
			err = unix.Mkdirat(dfd, base, create)
		}
	}
	if err != nil && !existed {
		return &os.PathError{Op: "mkdir", Path: e.Path, Err: err}
	}
	if existed || !a.ownedAsCreated(dfd, e) {
		if err := a.owner(dfd, e.Path, base, e); err != nil {
			return err
		}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	if !existed && create == e.Mode {
		a.seen.modeSet[e.Path] = true
	} else {
		delete(a.seen.modeSet, e.Path)
	}
	if !existed && dfd == a.dirs.last.fd && a.dirs.last.plain && e.Xattrs["system.posix_acl_default"] == nil {
		// Made here with no set-gid bit (finish sets the mode) and
		// nothing to inherit: dirFor need not ask.
		a.dirs.plain[e.Path] = true
	}
	a.files[e.Path] = e
	a.seen.dirty[e.Path] = true
	a.touchParent(e.Path)
	return nil
}

func (a *applier) rootDir(e *Entry) error {
	a.dirsChanged()
	if err := a.owner(a.t.Fd(), ".", "", e); err != nil {
		return err
	}
	if err := a.xattrs(-1, a.t.Fd(), "", e); err != nil {
		return err
	}
	a.files["."] = e
	a.seen.dirty["."] = true
	return nil
}

func (a *applier) symlink(dfd int, base string, e *Entry) error {
	// As for files: create first, clear the name only when it is taken.
	err := unix.Symlinkat(e.Link, dfd, base)
	if err == unix.EEXIST {
		if err := a.clear(dfd, base, e.Path); err != nil {
			return err
		}
		err = unix.Symlinkat(e.Link, dfd, base)
	} else if err == nil {
		a.files.deleteTree(e.Path)
	}
	if err != nil {
		return &os.PathError{Op: "symlink", Path: e.Path, Err: err}
	}
	if !a.ownedAsCreated(dfd, e) {
		if err := a.owner(dfd, e.Path, base, e); err != nil {
			return err
		}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return setTimes(dfd, base, e.Mtime)
}

func (a *applier) node(dfd int, base string, e *Entry) error {
	if err := a.clear(dfd, base, e.Path); err != nil {
		return err
	}
	if e.Type != TypeFifo && a.opts.Rootless {
		// An unprivileged user cannot make device nodes: an empty file
		// stands in, and the file list remembers what it stands for.
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return &os.PathError{Op: "create", Path: e.Path, Err: err}
		}
		unix.Close(fd)
		e.Placeholder = true
	} else {
		mode := e.Mode
		switch e.Type {
		case TypeChar:
			mode |= unix.S_IFCHR
		case TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := unix.Mkdev(uint32(e.DevMajor), uint32(e.DevMinor))
		if err := unix.Mknodat(dfd, base, mode, int(dev)); err != nil {
			return &os.PathError{Op: "mknod", Path: e.Path, Err: err}
		}
	}
	if err := a.owner(dfd, e.Path, base, e); err != nil {
		return err
	}
	// The node was just made by this process: base is not a symlink.
	if err := unix.Fchmodat(dfd, base, e.Mode, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: e.Path, Err: err}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return setTimes(dfd, base, e.Mtime)
}

func (a *applier) hardlink(dfd int, base, name, target string) error {
	tname, err := cleanName(target)
	if err != nil {
		return err
	}
	if tname == "." || tname == name {
		return fmt.Errorf("%w: hardlink %q to %q", ErrUnsafePath, name, target)
	}
	tdir, tbase := split(tname)
	tfd, err := a.t.Dir(tdir)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hardlink target %s: %w", target, err)
	}
	var st unix.Stat_t
	if err == nil {
		defer unix.Close(tfd)
		err = unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %s is a directory", target)
	}
	if err := a.clear(dfd, base, name); err != nil {
		return err
	}
	e := &Entry{Path: name, Type: TypeReg, Link: tname}
	if te := a.files[tname]; te != nil {
		c := *te
		c.Path, c.Link = name, tname
		if te.Type == TypeSymlink {
			c.Link = te.Link
		}
		e = &c
	}
	if err == nil {
		if err := unix.Linkat(tfd, tbase, dfd, base, 0); err != nil {
			return &os.PathError{Op: "link", Path: name, Err: err}
		}
	} else {
		// The target is in a lower layer this directory does not hold
		// (overlay). Layers cannot link across each other, so copy the
		// target up to its own path in this layer and link the new name
		// to that copy: through the mount both names stay one file, as
		// they are in the image.
		te := a.files[tname]
		if te == nil || te.Type != TypeReg {
			return fmt.Errorf("hardlink target %s: %w (in no layer below)", target, os.ErrNotExist)
		}
		tdfd, err := a.parent(tdir)
		if err != nil {
			return fmt.Errorf("hardlink target %s: %w", target, err)
		}
		defer unix.Close(tdfd)
		tcopy := *te
		if err := a.copyUp(tdfd, tbase, tname, &tcopy); err != nil {
			return fmt.Errorf("hardlink target %s: %w", target, err)
		}
		if err := unix.Linkat(tdfd, tbase, dfd, base, 0); err != nil {
			return &os.PathError{Op: "link", Path: name, Err: err}
		}
	}
	a.files[name] = e
	a.touchParent(name)
	return nil
}

// copyUp copies the regular file name of the first lower layer holding it
// to base in dfd, with e's metadata.
func (a *applier) copyUp(dfd int, base, name string, e *Entry) error {
	for _, low := range a.opts.Lower {
		lt, err := fsx.OpenTree(low)
		if err != nil {
			return err
		}
		sfd, err := lt.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		lt.Close()
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		src := os.NewFile(uintptr(sfd), name)
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			src.Close()
			return &os.PathError{Op: "create", Path: e.Path, Err: err}
		}
		dst := os.NewFile(uintptr(fd), e.Path)
		// The copy keeps the lower file's holes.
		err = copyHoley(fd, sfd, a.buf)
		src.Close()
		if err == nil {
			err = a.owner(dfd, e.Path, base, e)
		}
		if err == nil {
			err = unix.Fchmod(fd, e.Mode)
		}
		if err == nil {
			err = a.xattrs(fd, -1, "", e)
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return setTimes(dfd, base, e.Mtime)
	}
	return fmt.Errorf("%w (in no layer below)", os.ErrNotExist)
}
