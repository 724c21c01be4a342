package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// tree confines every file operation to one directory: names are resolved
// with openat2(RESOLVE_IN_ROOT), so "..", absolute names and symlinks,
// absolute or not, all resolve inside the root as if it were "/", the way
// a container sees them. The final component of a name is never followed:
// it is handled fd-relative with *at syscalls and AT_SYMLINK_NOFOLLOW.
type tree struct {
	fd  int
	dir string
}

const resolveFlags = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &tree{fd: fd, dir: dir}, nil
}

func (t *tree) close() error {
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}

// openat2 resolves name (slash-separated, relative to the root) inside
// the root.
func (t *tree) openat2(name string, flags uint64, mode uint64) (int, error) {
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

// dirfd returns an O_PATH descriptor of the directory name.
func (t *tree) dirfd(name string) (int, error) {
	return t.openat2(name, unix.O_PATH|unix.O_DIRECTORY, 0)
}

// mkdirAll makes the directory name and its missing parents, each created
// with mode 0700 and handed to made (which sets its final metadata later),
// and returns an O_PATH descriptor of it.
func (t *tree) mkdirAll(name string, made func(p string)) (int, error) {
	fd, err := t.dirfd(name)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parts := strings.Split(name, "/")
	pfd, err := t.dirfd("")
	if err != nil {
		return -1, err
	}
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fd, err := t.dirfd(p)
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(pfd, parts[i], 0o700); err != nil && err != unix.EEXIST {
				unix.Close(pfd)
				return -1, &os.PathError{Op: "mkdir", Path: p, Err: err}
			}
			if made != nil {
				made(p)
			}
			fd, err = t.dirfd(p)
		}
		unix.Close(pfd)
		if err != nil {
			return -1, err
		}
		pfd = fd
	}
	return pfd, nil
}

// procPath names the entry base of the directory dirfd through procfs,
// for syscalls that have no *at form (lsetxattr, llistxattr). The magic
// link /proc/self/fd/N is the directory itself, and the l* syscalls do
// not follow base, so nothing outside the root is reached.
func procPath(dirfd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
}

// fdPath names the file an O_PATH descriptor refers to.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// removeAllAt removes name in the directory dirfd and everything under
// it, without following symlinks. Directories it cannot read or write
// (mode 0000 as an unprivileged user) are given owner permissions first.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		if cerr := unix.Fchmodat(dirfd, name, 0o700, 0); cerr == nil {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	// Writing into the directory needs owner write and search rights.
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil && st.Mode&0o300 != 0o300 {
		_ = unix.Fchmod(fd, 0o700)
	}
	f := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := f.Readdirnames(256)
		for _, n := range names {
			if err := removeAllAt(fd, n); err != nil {
				f.Close()
				return fmt.Errorf("%s/%w", name, err)
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	f.Close()
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

// RemoveAll removes a directory tree that may hold directories without
// owner permissions (a rootless snapshot of an image with 0000
// directories), without following symlinks.
func RemoveAll(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	dir, base := path.Split(path.Clean(p))
	if dir == "" {
		dir = "."
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	defer unix.Close(fd)
	if err := removeAllAt(fd, base); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// openReadLending opens the regular file name for reading. When an
// unprivileged owner lacks the rights (a rootless snapshot keeps an
// image's 0000 directories and files as they are), it lends itself search
// rights on the directories on the way and read rights on the file, for
// the time of the open only.
func (t *tree) openReadLending(name string) (int, error) {
	fd, err := t.openat2(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
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
		pfd, err := t.openat2(p, unix.O_PATH|unix.O_NOFOLLOW|flags, 0)
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
		if err := unix.Chmod(fdPath(pfd), (st.Mode&0o7777)|perm); err != nil {
			unix.Close(pfd)
			return err
		}
		restore = append(restore, func() {
			_ = unix.Chmod(fdPath(pfd), st.Mode&0o7777)
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
	return t.openat2(name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
}

// dirent is a directory entry as getdents reports it: typ is a DT_
// constant, DT_UNKNOWN where the file system does not say.
type dirent struct {
	name string
	typ  uint8
}

var direntBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// readDirents lists the open directory fd, "." and ".." left out.
func readDirents(fd int) ([]dirent, error) {
	buf := direntBufs.Get().(*[32 << 10]byte)
	defer direntBufs.Put(buf)
	var out []dirent
	for {
		n, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type,
		// then the NUL-terminated name.
		for b := buf[:n]; len(b) > 0; {
			if len(b) < 19 {
				return nil, errors.New("getdents: short record")
			}
			rec := int(binary.NativeEndian.Uint16(b[16:18]))
			if rec < 19 || rec > len(b) {
				return nil, errors.New("getdents: bad record length")
			}
			name := b[19:rec]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, dirent{name: s, typ: b[18]})
			}
			b = b[rec:]
		}
	}
}
