package layer

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// clear removes whatever is at base so a non-directory can take its
// place, and drops it from the file list. Files of this layer's earlier
// entries there are moved to the shadow directory first.
func (a *applier) clear(dfd int, base, name string) error {
	a.dirsChanged()
	if a.shadow.dir != "" && len(a.shadow.payload) > 0 {
		real, err := a.realName(dfd, base, name)
		if err != nil {
			return err
		}
		if err := a.keepPayloads(dfd, base, real); err != nil {
			return err
		}
	}
	if err := fsx.RemoveAt(dfd, base); err != nil {
		return err
	}
	a.files.deleteTree(name)
	return nil
}

func (a *applier) whiteout(dir, base string) error {
	a.dirsChanged()
	if base == whiteoutOpaque {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		// Other .wh..wh. names are aufs bookkeeping, not whiteouts.
		return nil
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafePath, base)
	}
	name := victim
	if dir != "." {
		name = dir + "/" + victim
	}
	if a.seen.written[name] {
		// Whiteouts hide lower layers, not this one.
		return nil
	}
	if a.seen.upper[name] {
		// This layer put files under name: only what lower layers hold
		// there goes, as with an opaque marker.
		return a.opaque(name)
	}
	if a.opts.Whiteouts == WhiteoutConvert {
		dfd, err := a.parent(dir)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := fsx.RemoveAt(dfd, victim); err != nil {
			return err
		}
		a.files.deleteTree(name)
		a.touchParent(name)
		if err := a.opts.Whiteouter.Whiteout(dfd, victim); err != nil {
			return fmt.Errorf("whiteout %s: %w", name, err)
		}
		return nil
	}
	dfd, err := a.t.Dir(dir)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		a.files.deleteTree(name)
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := fsx.RemoveAt(dfd, victim); err != nil {
		return err
	}
	a.files.deleteTree(name)
	a.touchParent(name)
	return nil
}

func (a *applier) opaque(dir string) error {
	if a.opts.Whiteouts == WhiteoutConvert {
		dfd, err := a.parent(dir)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		// What this layer already put in the directory stays; lower
		// layers' files leave the merged list.
		a.pruneList(dir)
		if err := a.opts.Whiteouter.Opaque(dfd); err != nil {
			return fmt.Errorf("opaque %s: %w", dir, err)
		}
		return nil
	}
	fd, err := a.t.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		a.pruneList(dir)
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := a.pruneDir(fd, dir); err != nil {
		return err
	}
	a.pruneList(dir)
	if dir != "." {
		a.seen.dirty[dir] = true
	}
	return nil
}

// pruneDir removes from the directory fd (at path dir) everything this
// layer did not write, descending into directories it did write.
func (a *applier) pruneDir(fd int, dir string) error {
	names, err := fsx.ReadDirNames(fd, dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		p := n
		if dir != "." {
			p = dir + "/" + n
		}
		if !a.seen.written[p] && !a.seen.upper[p] {
			if err := fsx.RemoveAt(fd, n); err != nil {
				return err
			}
			continue
		}
		cfd, err := unix.Openat(fd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOTDIR || err == unix.ELOOP {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "open", Path: p, Err: err}
		}
		err = a.pruneDir(cfd, p)
		unix.Close(cfd)
		if err != nil {
			return err
		}
	}
	return nil
}

// pruneList drops from the list what lies under dir and this layer did
// not write (nor holds something it wrote).
func (a *applier) pruneList(dir string) {
	prefix := dir + "/"
	for p := range a.files {
		if (dir == "." && p != ".") || strings.HasPrefix(p, prefix) {
			if !a.seen.written[p] && !a.seen.upper[p] {
				delete(a.files, p)
			}
		}
	}
}
