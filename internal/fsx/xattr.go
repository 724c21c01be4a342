package fsx

import (
	"bytes"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ListXattrs lists the extended attributes of p without following a
// final symlink; a file system without xattrs has none. The list may grow
// between the size query and the read (ERANGE): it is asked again.
func ListXattrs(p string) ([]string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			sz, err := unix.Llistxattr(p, nil)
			if err != nil {
				return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
		}
		return splitNames(buf[:n]), nil
	}
}

func splitNames(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			i = len(b)
		}
		if i > 0 {
			out = append(out, string(b[:i]))
		}
		b = b[min(i+1, len(b)):]
	}
	return out
}

// GetXattr reads the xattr name of p without following a final symlink.
func GetXattr(p, name string) ([]byte, error) {
	v, _, err := getXattr(p, name, make([]byte, 256))
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), v...), nil
}

// getXattr reads the xattr name of p into buf, growing it as needed; it
// returns the value (aliasing the buffer) and the buffer for the next
// read. A missing xattr is unix.ENODATA, unwrapped.
func getXattr(p, name string, buf []byte) ([]byte, []byte, error) {
	for {
		sz, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			if sz, err = unix.Lgetxattr(p, name, nil); err != nil {
				return nil, buf, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
			}
			buf = make([]byte, sz+64)
			continue
		}
		if err == unix.ENODATA {
			return nil, buf, err
		}
		if err != nil {
			return nil, buf, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		return buf[:sz], buf, nil
	}
}

// ReadXattrs reads every extended attribute of p (not following a final
// symlink); nil when it has none.
func ReadXattrs(p string) (map[string][]byte, error) {
	names, err := ListXattrs(p)
	if err != nil || len(names) == 0 {
		return nil, err
	}
	out := make(map[string][]byte, len(names))
	buf := make([]byte, 256)
	for _, n := range names {
		var v []byte
		v, buf, err = getXattr(p, n, buf)
		if err == unix.ENODATA {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, err
		}
		out[n] = append([]byte(nil), v...)
	}
	return out, nil
}

// CopyXattrs copies the extended attributes of src to dst, neither
// followed if a symlink. An xattr dst refuses with an error skip accepts
// is left out (an unprivileged copy cannot set trusted.* or
// security.*); skip may be nil.
func CopyXattrs(src, dst string, skip func(error) bool) error {
	names, err := ListXattrs(src)
	if err != nil {
		return err
	}
	buf := make([]byte, 256)
	for _, n := range names {
		var v []byte
		v, buf, err = getXattr(src, n, buf)
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, n, v, 0); err != nil {
			if skip != nil && skip(err) {
				continue
			}
			return fmt.Errorf("xattr %s: %w", n, err)
		}
	}
	return nil
}

// CopyXattrsFd copies the extended attributes of the open file in to the
// open file out, as CopyXattrs does. It reads into stack buffers first:
// most files have no xattrs or small ones, and a tree copy calls it for
// every file.
func CopyXattrsFd(out, in int, skip func(error) bool) error {
	var lb [1024]byte
	list := lb[:]
	sz, err := unix.Flistxattr(in, list)
	for err == unix.ERANGE {
		if sz, err = unix.Flistxattr(in, nil); err == nil {
			list = make([]byte, sz+64)
			sz, err = unix.Flistxattr(in, list)
		}
	}
	if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return nil
	}
	if err != nil {
		return fmt.Errorf("xattrs: %w", err)
	}
	list = list[:sz]
	var vb [256]byte
	for len(list) > 0 {
		i := bytes.IndexByte(list, 0)
		if i < 0 {
			i = len(list)
		}
		name := string(list[:i])
		list = list[min(i+1, len(list)):]
		if name == "" {
			continue
		}
		val := vb[:]
		n, err := unix.Fgetxattr(in, name, val)
		for err == unix.ERANGE {
			if n, err = unix.Fgetxattr(in, name, nil); err == nil {
				val = make([]byte, n+64)
				n, err = unix.Fgetxattr(in, name, val)
			}
		}
		if err == unix.ENODATA {
			continue
		}
		if err != nil {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
		if err := unix.Fsetxattr(out, name, val[:n], 0); err != nil {
			if skip != nil && skip(err) {
				continue
			}
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}
