package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// NameKind says what a layer entry's name means.
type NameKind int

const (
	// Plain is an ordinary entry.
	Plain NameKind = iota
	// Whiteout deletes the target from the layers below.
	Whiteout
	// Opaque makes the target directory hide the layers below.
	Opaque
	// Meta is a reserved whiteout metadata name (such as AUFS's
	// .wh..wh.plnk) that carries nothing for a rootfs and is skipped.
	Meta
)

func (k NameKind) String() string {
	switch k {
	case Whiteout:
		return "whiteout"
	case Opaque:
		return "opaque"
	case Meta:
		return "meta"
	}
	return "plain"
}

// ParseName classifies the path of a layer tar entry. For a whiteout,
// target is the path it deletes; for an opaque marker, the directory it
// makes opaque ("." for the layer root); for a plain entry, the cleaned
// path itself. Paths are slash-separated and relative; a leading "/" or
// "./" is dropped.
func ParseName(p string) (kind NameKind, target string, err error) {
	clean := path.Clean("/" + p)[1:]
	if clean == "" {
		clean = "."
	}
	dir, base := path.Split(clean)
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if !strings.HasPrefix(base, WhiteoutPrefix) {
		return Plain, clean, nil
	}
	if base == OpaqueWhiteout {
		return Opaque, dir, nil
	}
	if strings.HasPrefix(base, WhiteoutMetaPrefix) {
		return Meta, clean, nil
	}
	name := base[len(WhiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return Plain, "", fmt.Errorf("%w: %q deletes nothing", ErrInvalidWhiteout, p)
	}
	return Whiteout, path.Join(dir, name), nil
}

// WhiteoutName is the OCI whiteout entry that deletes p.
func WhiteoutName(p string) string {
	dir, base := path.Split(p)
	return dir + WhiteoutPrefix + base
}

// OpaqueName is the OCI entry that makes the directory dir opaque.
func OpaqueName(dir string) string {
	if dir == "." || dir == "" {
		return OpaqueWhiteout
	}
	return strings.TrimSuffix(dir, "/") + "/" + OpaqueWhiteout
}

// IsWhiteout says whether a file is an overlay whiteout: a character
// device with device number 0:0.
func IsWhiteout(fi fs.FileInfo) bool {
	if fi.Mode()&fs.ModeCharDevice == 0 || fi.Mode()&fs.ModeDevice == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// MakeWhiteout creates, in the open directory dir, the overlay whiteout
// that deletes name from the layers below. The OCI spec lets a whiteout
// hide only lower layers, so an entry of the same name that the layer
// itself already holds is kept.
func MakeWhiteout(dir *os.File, name string) error {
	err := unix.Mknodat(int(dir.Fd()), name, unix.S_IFCHR, 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create whiteout %s in %s: %w", name, dir.Name(), err)
	}
	return nil
}

// SetOpaque marks the open directory dir opaque in the given xattr form.
func SetOpaque(dir *os.File, x Xattrs) error {
	if err := unix.Fsetxattr(int(dir.Fd()), x.Opaque(), []byte("y"), 0); err != nil {
		return fmt.Errorf("mark %s opaque (%s): %w", dir.Name(), x.Opaque(), err)
	}
	return nil
}

// IsOpaque says whether the directory at p is opaque in the given form.
func IsOpaque(p string, x Xattrs) (bool, error) {
	return xattrIs(p, x.Opaque(), "y")
}

// ApplyWhiteout converts an OCI whiteout or opaque marker found while
// extracting a layer into root into its overlay form: target is what
// ParseName returned. Missing parent directories are created (mode 0755),
// as a tar extractor does for any entry whose parent the layer omits.
func ApplyWhiteout(root *os.Root, kind NameKind, target string, x Xattrs) error {
	switch kind {
	case Whiteout:
		dir, name := path.Split(target)
		d, err := openDirIn(root, dir)
		if err != nil {
			return fmt.Errorf("whiteout %s: %w", target, err)
		}
		defer d.Close()
		return MakeWhiteout(d, name)
	case Opaque:
		d, err := openDirIn(root, target)
		if err != nil {
			return fmt.Errorf("opaque directory %s: %w", target, err)
		}
		defer d.Close()
		return SetOpaque(d, x)
	case Meta, Plain:
		return nil
	}
	return fmt.Errorf("%w: unknown kind %d for %s", ErrInvalidWhiteout, kind, target)
}

// openDirIn opens (creating if needed) a directory inside root.
func openDirIn(root *os.Root, dir string) (*os.File, error) {
	dir = strings.TrimSuffix(dir, "/")
	if dir == "" {
		dir = "."
	}
	if dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	f, err := root.Open(dir)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.IsDir() {
		f.Close()
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	return f, nil
}

func xattrIs(p, name, want string) (bool, error) {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(p, name, buf)
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP), errors.Is(err, unix.ERANGE):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
	}
	return string(buf[:n]) == want, nil
}
