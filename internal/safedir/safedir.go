// Package safedir opens files and directories below a root without
// following symbolic links: the root itself is the caller's choice and is
// opened as given, but every name below it is opened relative to its
// parent's descriptor with O_NOFOLLOW, so a link planted inside a layout
// (a state directory pointing at /etc, say) is refused instead of
// followed, and no later rename of a component can redirect what was
// opened.
package safedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrSymlink means a name that must be a plain directory or file is a
// symbolic link.
var ErrSymlink = errors.New("is a symbolic link")

// LinkError names the symbolic link that was refused. It matches
// ErrSymlink with errors.Is.
type LinkError struct {
	Path string
}

func (e *LinkError) Error() string {
	return e.Path + " is a symbolic link: refusing to follow it"
}

// Is makes errors.Is(err, ErrSymlink) hold.
func (e *LinkError) Is(target error) bool { return target == ErrSymlink }

// Open opens the directory root/rel. rel must be local (no "..", not
// absolute); "" and "." mean root itself.
func Open(root, rel string) (*os.File, error) { return openDir(root, rel, failMissing, 0) }

// MkdirAll opens the directory root/rel, creating root (following links,
// as os.MkdirAll does) and every missing component of rel (without
// following any) with mode perm. A directory it creates is made durable
// by an fsync of its parent.
func MkdirAll(root, rel string, perm os.FileMode) (*os.File, error) {
	return openDir(root, rel, createMissing, perm)
}

// OpenFile opens the file root/rel with flag (O_NOFOLLOW and O_CLOEXEC are
// added) and perm. When flag has O_CREATE, missing parent directories are
// created as by MkdirAll with mode 0755.
func OpenFile(root, rel string, flag int, perm os.FileMode) (*os.File, error) {
	dir, name, err := splitRel(rel)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Join(root, rel), err)
	}
	var d *os.File
	if flag&os.O_CREATE != 0 {
		d, err = MkdirAll(root, dir, 0o755)
	} else {
		d, err = Open(root, dir)
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return OpenAt(d, name, flag, perm)
}

// OpenAt opens name in the open directory dir with flag (O_NOFOLLOW and
// O_CLOEXEC are added) and perm; a symbolic link gives a *LinkError.
func OpenAt(dir *os.File, name string, flag int, perm os.FileMode) (*os.File, error) {
	p := filepath.Join(dir.Name(), name)
	fd, err := unix.Openat(int(dir.Fd()), name, flag|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		if isLink(dir, name, err) {
			return nil, &LinkError{Path: p}
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// ReadFile reads the regular file root/rel whole, refusing links, files
// that are not regular and files larger than max bytes (the error then
// wraps tooLarge).
func ReadFile(root, rel string, max int64, tooLarge error) ([]byte, error) {
	f, err := OpenFile(root, rel, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", f.Name(), fi.Mode().Type())
	}
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: %w: %d bytes, more than the limit of %d", f.Name(), tooLarge, fi.Size(), max)
	}
	// Read one byte past max so that a file that grew is caught too.
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: %w: more than the limit of %d bytes", f.Name(), tooLarge, max)
	}
	return b, nil
}

// CheckNoLinks returns a *LinkError for the first of root/rels that is a
// symbolic link. Names that do not exist are fine. List parents before
// their children.
func CheckNoLinks(root string, rels ...string) error {
	for _, rel := range rels {
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return &LinkError{Path: p}
		}
	}
	return nil
}

// ifMissing says what openDir does with a missing directory.
type ifMissing int

const (
	failMissing   ifMissing = iota // fail with fs.ErrNotExist
	createMissing                  // create it with the given mode
)

func openDir(root, rel string, missing ifMissing, perm os.FileMode) (*os.File, error) {
	names, err := components(rel)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", filepath.Join(root, rel), err)
	}
	if missing == createMissing {
		if err := mkdirRoot(root, perm); err != nil {
			return nil, err
		}
	}
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: root, Err: err}
	}
	cur := root
	for _, name := range names {
		next := filepath.Join(cur, name)
		nfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && missing == createMissing {
			merr := unix.Mkdirat(fd, name, uint32(perm.Perm()))
			switch {
			case merr == nil:
				if serr := unix.Fsync(fd); serr != nil && serr != unix.EINVAL {
					unix.Close(fd)
					return nil, &fs.PathError{Op: "sync", Path: cur, Err: serr}
				}
			case merr != unix.EEXIST:
				unix.Close(fd)
				return nil, &fs.PathError{Op: "mkdir", Path: next, Err: merr}
			}
			nfd, err = unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			link := (err == unix.ELOOP || err == unix.ENOTDIR) && isLinkAt(fd, name)
			unix.Close(fd)
			if link {
				return nil, &LinkError{Path: next}
			}
			return nil, &fs.PathError{Op: "open", Path: next, Err: err}
		}
		unix.Close(fd)
		fd, cur = nfd, next
	}
	return os.NewFile(uintptr(fd), cur), nil
}

// mkdirRoot creates root when it is missing and syncs its parent.
func mkdirRoot(root string, perm os.FileMode) error {
	if fi, err := os.Stat(root); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.MkdirAll(root, perm); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(root))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// components splits a local relative path into its names; "" and "." have
// none.
func components(rel string) ([]string, error) {
	if rel == "" || rel == "." {
		return nil, nil
	}
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("%q is not a path below the root", rel)
	}
	return strings.Split(filepath.Clean(rel), string(filepath.Separator)), nil
}

// splitRel splits rel into its directory and a final name.
func splitRel(rel string) (dir, name string, err error) {
	names, err := components(rel)
	if err != nil {
		return "", "", err
	}
	if len(names) == 0 {
		return "", "", errors.New("no file name")
	}
	return filepath.Join(names[:len(names)-1]...), names[len(names)-1], nil
}

func isLink(dir *os.File, name string, err error) bool {
	return (err == unix.ELOOP || err == unix.ENOTDIR) && isLinkAt(int(dir.Fd()), name)
}

func isLinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}
