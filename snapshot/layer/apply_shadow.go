package layer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// notePayload records that the regular file base in dfd, the entry's
// name, holds the data of the current entry.
func (a *applier) notePayload(dfd int, base, name string) error {
	if a.shadow.dir == "" {
		return nil
	}
	real, err := a.realName(dfd, base, name)
	if err != nil {
		return err
	}
	if real != name {
		// The name went through a symlink: the file is where the
		// symlink led, and a later entry may point the symlink
		// elsewhere before the rebuild asks for the name. The shadow
		// directory says where the data is (a symlink to the real
		// path), until the file itself is moved there.
		if err := a.openShadow(); err != nil {
			return err
		}
		if err := unix.Symlinkat(real, a.shadow.fd, strconv.Itoa(a.shadow.seq)); err != nil {
			return &os.PathError{Op: "note the place of", Path: name, Err: err}
		}
		name = real
	}
	a.shadow.payload[name] = a.shadow.seq
	for p, _ := split(name); p != "."; p, _ = split(p) {
		a.shadow.under[p]++
	}
	return nil
}

// throughSymlink says whether a directory above name is a symlink.
func (a *applier) throughSymlink(name string) bool {
	for p, _ := split(name); p != "."; p, _ = split(p) {
		if e := a.files[p]; e != nil && e.Type == TypeSymlink {
			return true
		}
	}
	return false
}

// realName returns the path base in dfd has in the tree: name, unless a
// directory above name is a symlink.
func (a *applier) realName(dfd int, base, name string) (string, error) {
	if !a.throughSymlink(name) {
		return name, nil
	}
	dir, err := a.realDir(dfd)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if dir == "." {
		return base, nil
	}
	return dir + "/" + base, nil
}

// realDir returns the path of the directory dfd relative to the root.
func (a *applier) realDir(dfd int) (string, error) {
	root, err := os.Readlink(fsx.FdPath(a.t.Fd()))
	if err != nil {
		return "", err
	}
	dir, err := os.Readlink(fsx.FdPath(dfd))
	if err != nil {
		return "", err
	}
	if dir == root {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(dir, strings.TrimSuffix(root, "/")+"/")
	if !ok {
		return "", fmt.Errorf("%w: %s is not under %s", ErrUnsafePath, dir, root)
	}
	return rel, nil
}

// openShadow makes and opens the shadow directory when first needed.
func (a *applier) openShadow() error {
	if a.shadow.fd >= 0 {
		return nil
	}
	if err := os.Mkdir(a.shadow.dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fd, err := unix.Open(a.shadow.dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: a.shadow.dir, Err: err}
	}
	a.shadow.fd = fd
	return nil
}

func (a *applier) dropPayload(name string) {
	delete(a.shadow.payload, name)
	for p, _ := split(name); p != "."; p, _ = split(p) {
		if a.shadow.under[p]--; a.shadow.under[p] <= 0 {
			delete(a.shadow.under, p)
		}
	}
}

// keepPayloads moves base in dfd (the path name), or the files under it
// that hold payloads of this layer's entries, to the shadow directory:
// a rename, no copy. Only directories that hold such files are read.
func (a *applier) keepPayloads(dfd int, base, name string) error {
	if seq, ok := a.shadow.payload[name]; ok {
		if err := a.moveToShadow(dfd, base, name, seq); err != nil {
			return err
		}
		return nil
	}
	if a.shadow.under[name] == 0 {
		return nil
	}
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	names, err := fsx.ReadDirNames(fd, name)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := a.keepPayloads(fd, n, name+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

// shadow moves the file base in dfd, the data of entry seq, to the
// shadow directory.
func (a *applier) moveToShadow(dfd int, base, name string, seq int) error {
	if err := a.openShadow(); err != nil {
		return fmt.Errorf("keep replaced file %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		// Another name of this layer links the file: a rename would
		// add a link the image does not have (overlay shows link
		// counts), so the bytes are copied instead.
		if err := a.shadowCopy(dfd, base, name, seq); err != nil {
			return err
		}
	} else if err := unix.Renameat(dfd, base, a.shadow.fd, strconv.Itoa(seq)); err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	a.dropPayload(name)
	return nil
}

// shadowCopy copies the file base in dfd to the shadow directory as
// the data of entry seq, holes kept.
func (a *applier) shadowCopy(dfd int, base, name string, seq int) error {
	src, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		// An unprivileged owner lends itself read rights for the open
		// (the other names keep the file's mode).
		var st unix.Stat_t
		if err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			if err = unix.Fchmodat(dfd, base, (st.Mode&0o7777)|0o400, 0); err == nil {
				src, err = unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if cerr := unix.Fchmodat(dfd, base, st.Mode&0o7777, 0); err == nil {
					err = cerr
				}
			}
		}
	}
	if err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	defer unix.Close(src)
	// A symlink saying where the file was goes: the file takes its place.
	if err := unix.Unlinkat(a.shadow.fd, strconv.Itoa(seq), 0); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	dst, err := unix.Openat(a.shadow.fd, strconv.Itoa(seq), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	err = copyHoley(dst, src, a.buf)
	if cerr := unix.Close(dst); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keep replaced file %s: %w", name, err)
	}
	return nil
}
