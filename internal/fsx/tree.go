package fsx

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Tree confines every file operation to one directory: names are
// resolved with openat2(RESOLVE_IN_ROOT), so "..", absolute names and
// symlinks, absolute or not, all resolve inside the root as if it were
// "/", the way a container sees them. The final component of a name is
// never followed by the callers: they handle it fd-relative with *at
// syscalls and AT_SYMLINK_NOFOLLOW.
type Tree struct {
	fd  int
	dir string
}

const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// OpenTree opens the directory dir as a Tree.
func OpenTree(dir string) (*Tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Tree{fd: fd, dir: dir}, nil
}

// Fd is the root's O_PATH descriptor.
func (t *Tree) Fd() int { return t.fd }

// Close closes the root's descriptor.
func (t *Tree) Close() error {
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

// Open resolves name (slash-separated, relative to the root; "" is the
// root) inside the root and opens it with flags.
func (t *Tree) Open(name string, flags uint64, mode uint64) (int, error) {
	if name == "" {
		name = "."
	}
	for {
		fd, err := unix.Openat2(t.fd, name, &unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Mode: mode, Resolve: resolveFlags})
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: name, Err: err}
		}
		return fd, nil
	}
}

// Dir returns an O_PATH descriptor of the directory name.
func (t *Tree) Dir(name string) (int, error) {
	return t.Open(name, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// MkdirAll makes the directory name and its missing parents, each
// created with mode 0700 and handed to made (which sets its final
// metadata later), and returns an O_PATH descriptor of it.
func (t *Tree) MkdirAll(name string, made func(p string)) (int, error) {
	fd, err := t.Dir(name)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parts := strings.Split(name, "/")
	pfd, err := t.Dir("")
	if err != nil {
		return -1, err
	}
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := t.Dir(p)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(pfd, parts[i], 0o700); err != nil && err != unix.EEXIST {
				unix.Close(pfd)
				return -1, &os.PathError{Op: "mkdir", Path: p, Err: err}
			}
			if made != nil {
				made(p)
			}
			fd, err = t.Dir(p)
		}
		unix.Close(pfd)
		if err != nil {
			return -1, err
		}
		pfd = fd
	}
	return pfd, nil
}

// OpenReadLending opens the regular file name for reading. When an
// unprivileged owner lacks the rights (a rootless snapshot keeps an
// image's 0000 directories and files as they are), it lends itself
// search rights on the directories on the way and read rights on the
// file, for the time of the open only.
func (t *Tree) OpenReadLending(name string) (int, error) {
	fd, err := t.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if !errors.Is(err, unix.EACCES) {
		return fd, err
	}
	var restore []func()
	defer func() {
		for i := len(restore) - 1; i >= 0; i-- {
			restore[i]()
		}
	}()
	lend := func(p string, perm uint32, flags uint64) error {
		pfd, err := t.Open(p, unix.O_PATH|unix.O_NOFOLLOW|flags, 0)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstat(pfd, &st); err != nil {
			unix.Close(pfd)
			return err
		}
		if st.Mode&perm == perm {
			unix.Close(pfd)
			return nil
		}
		if err := unix.Chmod(FdPath(pfd), (st.Mode&0o7777)|perm); err != nil {
			unix.Close(pfd)
			return err
		}
		restore = append(restore, func() {
			_ = unix.Chmod(FdPath(pfd), st.Mode&0o7777)
			unix.Close(pfd)
		})
		return nil
	}
	parts := strings.Split(name, "/")
	for i := 0; i < len(parts)-1; i++ {
		if err := lend(strings.Join(parts[:i+1], "/"), 0o100, unix.O_DIRECTORY); err != nil {
			return -1, err
		}
	}
	if err := lend(name, 0o400, 0); err != nil {
		return -1, err
	}
	return t.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}

// OpenRegular opens the regular file name (cleaned, relative to the
// root) for reading, lending rights as OpenReadLending does; anything
// but a regular file is refused.
func (t *Tree) OpenRegular(name string) (*os.File, error) {
	fd, err := t.OpenReadLending(name)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: not a regular file in %s", name, t.dir)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// ProcPath names the entry base of the directory dirfd through procfs,
// for syscalls that have no *at form (lsetxattr, llistxattr). The magic
// link /proc/self/fd/N is the directory itself, and the l* syscalls do
// not follow base, so nothing outside the root is reached.
func ProcPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

// FdPath names the file an O_PATH descriptor refers to.
func FdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
