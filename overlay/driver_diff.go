package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// diffOverlay turns the upper directory of an overlay rootfs (form x) into
// a diff without looking at the layers below: whiteout devices become
// whiteouts, opaque directories a directory and its opaque marker, and
// every other entry, directories with their metadata, is written as it
// is. files (the parent's list) is only needed in rootless mode, to see
// placeholders and what the user could not write; it may be nil
// otherwise.
func diffOverlay(upper string, x Xattrs, files layer.Files, o layer.Ownership) (*layer.Diff, error) {
	t, err := fsx.OpenTree(upper)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	var changes []*layer.Change
	first := map[inodeKey]string{}
	err = Changes(upper, x, func(c Change) error {
		if c.Kind == Deleted {
			changes = append(changes, &layer.Change{Kind: layer.ChangeWhiteout, Path: c.Path})
			return nil
		}
		ch, nlink, err := upperChange(t, c, files, o)
		if err != nil || ch == nil {
			return err
		}
		if ch.Entry.Type == layer.TypeReg && nlink > 1 {
			k := inodeKey{ch.Dev, ch.Ino}
			if p, ok := first[k]; ok {
				ch.Kind, ch.LinkTo = layer.ChangeLink, p
			} else {
				first[k] = c.Path
			}
		}
		changes = append(changes, ch)
		if c.Kind == OpaqueDir {
			changes = append(changes, &layer.Change{Kind: layer.ChangeOpaque, Path: c.Path})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return layer.NewDiff(upper, changes), nil
}

// upperChange describes the upper directory's entry c, found in the tree
// t, as a layer entry, and returns its link count; nil for a socket,
// which has no tar form.
func upperChange(t *fsx.Tree, c Change, files layer.Files, o layer.Ownership) (*layer.Change, uint64, error) {
	ch := &layer.Change{Kind: layer.ChangeFile, Path: c.Path}
	dir, base := split(c.Path)
	dfd, err := t.Dir(dir)
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, 0, &os.PathError{Op: "lstat", Path: c.Path, Err: err}
	}
	if _, ok := layer.FileType(st.Mode); !ok {
		return nil, 0, nil
	}
	var old *layer.Entry
	if files != nil {
		old = files[c.Path]
	}
	e, err := o.DiskEntry(fsx.ProcPath(dfd, base), c.Path, &st, c.Xattrs, old)
	if err != nil {
		return nil, 0, err
	}
	ch.Entry, ch.Dev, ch.Ino = e, st.Dev, st.Ino
	return ch, st.Nlink, nil
}

// Diff is the bundle's upper directory as a layer (see diffOverlay): its
// cost follows the change, not the rootfs.
func (o *Driver) Diff(_ context.Context, c *snapshot.Container, own layer.Ownership, _ time.Time) (*layer.Diff, error) {
	var files layer.Files
	if c.Rootless {
		// Placeholders and what the user could not write are only
		// known from the file list.
		files = layer.Files{}
		if top := c.Top(); top != nil {
			var err error
			if files, err = top.ReadFiles(); err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", top.ID, err)
			}
		}
	}
	return diffOverlay(o.upper(c), o.x, files, own)
}

// diskUsage sums the apparent size of the regular files under dir and
// counts its entries. Directories an unprivileged owner cannot read (mode
// 0000 in the image) are lent owner permissions for the time of the read.
func diskUsage(dir string) (size, count int64, err error) {
	var walk func(p string) error
	walk = func(p string) error {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		count++
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			size += st.Size
			return nil
		case unix.S_IFDIR:
		default:
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrPermission) && unix.Chmod(p, (st.Mode&0o7777)|0o500) == nil {
			f, err = os.Open(p)
			_ = unix.Chmod(p, st.Mode&0o7777)
		}
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if st.Mode&0o100 == 0 && len(names) > 0 {
			// Lstat of the children needs search permission.
			if err := unix.Chmod(p, (st.Mode&0o7777)|0o100); err == nil {
				defer unix.Chmod(p, st.Mode&0o7777)
			}
		}
		for _, n := range names {
			if err := walk(filepath.Join(p, n)); err != nil {
				return err
			}
		}
		return nil
	}
	err = walk(dir)
	return size, count - 1, err
}

type inodeKey struct{ dev, ino uint64 }

// split cuts a slash-separated relative path into its directory ("."
// for none) and base.
func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}
