package fsx

import (
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// RemoveAt removes name in the directory dirfd and everything under it,
// without following symlinks. Directories it cannot read or write (mode
// 0000 as an unprivileged user) are given owner permissions first.
func RemoveAt(dirfd int, name string) error {
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
			if err := RemoveAt(fd, n); err != nil {
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
	if err := RemoveAt(fd, base); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}
