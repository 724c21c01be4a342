package mutate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// DirOptions say how a directory becomes a layer.
type DirOptions struct {
	// PreserveOwner keeps the files' owners; else every file is root's
	// (0:0), as a build's COPY makes them.
	PreserveOwner bool
	// Clamp, when set, caps every mtime at this time (later ones get it),
	// so that the same files give the same layer.
	Clamp *time.Time
}

// capabilityXattr is the one extended attribute a directory layer keeps:
// file capabilities make binaries work (ping); the others a host file
// carries (SELinux labels, user.* notes) are the host's business.
const capabilityXattr = "security.capability"

// WriteDirTar writes the files under dir (not dir itself) as an
// uncompressed tar layer: depth first, names in byte order, a directory
// before what it holds; hardlinks within dir as hardlinks; mtimes with
// nanoseconds and no atime or ctime; owners as numbers without names;
// sockets left out (a layer cannot hold them). The same files always
// give the same bytes. Files are read through names resolved inside dir,
// and a file that changes while it is read fails the layer.
func WriteDirTar(ctx context.Context, w io.Writer, dir string, o DirOptions) error {
	changes, err := dirChanges(ctx, dir, o)
	if err != nil {
		return err
	}
	return layer.NewDiff(dir, changes).WriteTar(w, layer.WriteOptions{Clamp: o.Clamp})
}

// dirWalk lists a directory tree as layer changes.
type dirWalk struct {
	ctx   context.Context
	root  string
	o     DirOptions
	out   []*layer.Change
	links map[[2]uint64]string // (dev, ino) of files with several links → first path
}

func dirChanges(ctx context.Context, dir string, o DirOptions) ([]*layer.Change, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	w := &dirWalk{ctx: ctx, root: dir, o: o, links: map[[2]uint64]string{}}
	if err := w.walk(fd, ""); err != nil {
		return nil, err
	}
	return w.out, nil
}

// walk lists the directory fd, named rel inside the root.
func (w *dirWalk) walk(fd int, rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	ents, err := fsx.ReadDirents(fd)
	if err != nil {
		return fmt.Errorf("read directory %s: %w", w.show(rel), err)
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name
	}
	sort.Strings(names)
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat %s: %w", w.show(p), err)
		}
		c, err := w.change(fd, name, p, &st)
		if err != nil {
			return err
		}
		if c == nil {
			continue
		}
		w.out = append(w.out, c)
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open directory %s: %w", w.show(p), err)
		}
		err = w.walk(sub, p)
		unix.Close(sub)
		if err != nil {
			return err
		}
	}
	return nil
}

// change describes the file name of directory fd, at p; nil for what a
// layer cannot hold.
func (w *dirWalk) change(fd int, name, p string, st *unix.Stat_t) (*layer.Change, error) {
	e := &layer.Entry{
		Path:  p,
		Mode:  st.Mode & 0o7777,
		Mtime: st.Mtim.Nano(),
	}
	if w.o.PreserveOwner {
		e.UID, e.GID = int(st.Uid), int(st.Gid)
	}
	c := &layer.Change{Kind: layer.ChangeFile, Path: p, Entry: e}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		e.Type, e.Size = layer.TypeReg, st.Size
		c.Dev, c.Ino = st.Dev, st.Ino
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := w.links[key]; ok {
				c.Kind, c.LinkTo = layer.ChangeLink, first
				return c, nil
			}
			w.links[key] = p
		}
	case unix.S_IFDIR:
		e.Type = layer.TypeDir
	case unix.S_IFLNK:
		e.Type = layer.TypeSymlink
		target, err := readlinkat(fd, name, int(st.Size))
		if err != nil {
			return nil, fmt.Errorf("read link %s: %w", w.show(p), err)
		}
		e.Link = target
	case unix.S_IFCHR, unix.S_IFBLK:
		e.Type = layer.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			e.Type = layer.TypeBlock
		}
		e.DevMajor, e.DevMinor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		e.Type = layer.TypeFifo
	default:
		return nil, nil // a socket
	}
	if e.Type != layer.TypeSymlink {
		v, err := fsx.GetXattr(fsx.ProcPath(fd, name), capabilityXattr)
		switch {
		case err == nil:
			e.Xattrs = map[string][]byte{capabilityXattr: v}
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
		default:
			return nil, fmt.Errorf("%s: %w", w.show(p), err)
		}
	}
	return c, nil
}

func (w *dirWalk) show(rel string) string { return path.Join(w.root, rel) }

// readlinkat reads the target of the symlink name in fd; size is what
// stat said it is, a hint.
func readlinkat(fd int, name string, size int) (string, error) {
	n := max(size+1, 256)
	for {
		buf := make([]byte, n)
		got, err := unix.Readlinkat(fd, name, buf)
		if err != nil {
			return "", err
		}
		if got < n {
			return string(buf[:got]), nil
		}
		n *= 2
	}
}
