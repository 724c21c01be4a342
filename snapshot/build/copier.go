package build

import (
	"errors"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/build/contextdir"
	"golang.org/x/sys/unix"
)

// copier writes one COPY's items.
type copier struct {
	b     *builder
	t     *fsx.Tree
	w     *writer
	src   *source
	id    *identity
	chmod *uint32
	now   time.Time
}

// owner is the owner a copied file gets.
func (c *copier) owner(rel string, st *unix.Stat_t) (int, int, error) {
	if c.id != nil {
		return c.id.uid, c.id.gid, nil
	}
	return c.src.owner(rel, st)
}

// parents makes the missing directories of dir (relative to the rootfs),
// owned by the copy's owner (root when it keeps the source's), 0755.
func (c *copier) parents(dir string) error {
	if dir == "" {
		return nil
	}
	var made []string
	fd, err := c.t.MkdirAll(dir, func(p string) { made = append(made, p) })
	if err != nil {
		return err
	}
	unix.Close(fd)
	uid, gid := 0, 0
	if c.id != nil {
		uid, gid = c.id.uid, c.id.gid
	}
	for _, p := range made {
		if err := c.w.fixDir(c.t, p, 0o755, uid, gid, &c.now); err != nil {
			return err
		}
	}
	return nil
}

// isDir says whether name is a directory in the rootfs, symlinks
// followed inside it.
func (c *copier) isDir(name string) bool {
	fd, err := c.t.Open(name, unix.O_PATH, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	return unix.Fstat(fd, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

func (c *copier) item(it *item, dest string) error {
	destRel := strings.TrimPrefix(path.Clean(dest), "/")
	toDir := strings.HasSuffix(dest, "/")
	switch {
	case it.isDir():
		// A directory's contents go into dest.
		existed := c.isDir(destRel)
		if err := c.parents(parentOf(destRel)); err != nil {
			return err
		}
		if !existed {
			uid, gid := 0, 0
			if c.id != nil {
				uid, gid = c.id.uid, c.id.gid
			}
			// Made as a parent is: --chmod is for what is copied into it,
			// as BuildKit and buildah apply it.
			if err := c.w.put(c.t, destRel, &node{typ: unix.S_IFDIR, mode: 0o755, uid: uid, gid: gid, mtime: c.now}); err != nil {
				return err
			}
		}
		return c.tree(it, destRel)
	case it.archive && isArchive(c.src.t, it.rel):
		if destRel != "" {
			if err := c.parents(parentOf(destRel)); err != nil {
				return err
			}
			if !c.isDir(destRel) {
				if err := c.w.put(c.t, destRel, &node{typ: unix.S_IFDIR, mode: 0o755, mtime: c.now}); err != nil {
					return err
				}
			}
		}
		return c.extract(it, destRel)
	}
	target := destRel
	if toDir || c.isDir(destRel) {
		target = path.Join(destRel, path.Base(it.name))
	}
	if err := c.parents(parentOf(target)); err != nil {
		return err
	}
	n, err := c.fileNode(it)
	if err != nil {
		return err
	}
	return c.w.put(c.t, target, n)
}

func parentOf(rel string) string {
	d := path.Dir(rel)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// fileNode is the node of a single-file item.
func (c *copier) fileNode(it *item) (*node, error) {
	switch {
	case it.inline != nil:
		data := *it.inline
		mode := uint32(0o644)
		if c.chmod != nil {
			mode = *c.chmod
		}
		uid, gid := 0, 0
		if c.id != nil {
			uid, gid = c.id.uid, c.id.gid
		}
		return &node{typ: unix.S_IFREG, mode: mode, uid: uid, gid: gid, mtime: c.now,
			open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(data)), nil }}, nil
	case it.download != "":
		mode := uint32(0o600)
		if c.chmod != nil {
			mode = *c.chmod
		}
		uid, gid := 0, 0
		if c.id != nil {
			uid, gid = c.id.uid, c.id.gid
		}
		p := it.download
		return &node{typ: unix.S_IFREG, mode: mode, uid: uid, gid: gid, mtime: it.mtime,
			open: func() (io.ReadCloser, error) { return os.Open(p) }}, nil
	}
	return c.node(it.rel, &it.st)
}

// node is the node of the source entry rel.
func (c *copier) node(rel string, st *unix.Stat_t) (*node, error) {
	uid, gid, err := c.owner(rel, st)
	if err != nil {
		return nil, err
	}
	n := &node{typ: st.Mode & unix.S_IFMT, mode: st.Mode & 0o7777, uid: uid, gid: gid,
		mtime: time.Unix(st.Mtim.Sec, 0), rdev: st.Rdev}
	if c.chmod != nil && (n.typ == unix.S_IFREG || n.typ == unix.S_IFDIR) {
		n.mode = *c.chmod
	}
	switch n.typ {
	case unix.S_IFREG:
		t := c.src.t
		n.open = func() (io.ReadCloser, error) { return t.OpenRegular(rel) }
	case unix.S_IFLNK:
		if n.link, err = contextdir.Readlink(c.src.t, rel); err != nil {
			return nil, err
		}
	case unix.S_IFSOCK:
		return nil, nil
	}
	if n.typ != unix.S_IFLNK {
		n.xattrs = c.xattrs(rel)
	}
	return n, nil
}

// xattrs are the copyable xattrs of a source entry.
func (c *copier) xattrs(rel string) map[string][]byte {
	dir, base := path.Split(rel)
	dfd, err := c.src.t.Dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil
	}
	defer unix.Close(dfd)
	p := fsx.ProcPath(dfd, base)
	if base == "" {
		p = fsx.FdPath(dfd)
	}
	all, err := fsx.ReadXattrs(p)
	if err != nil || len(all) == 0 {
		return nil
	}
	out := map[string][]byte{}
	for k, v := range all {
		if copyableXattr(k) {
			out[k] = v
		}
	}
	return out
}

// tree copies the contents of the directory item into destRel.
func (c *copier) tree(it *item, destRel string) error {
	links := map[[2]uint64]string{}
	walk := func(e contextdir.Entry) error {
		if e.Rel == it.rel {
			return nil
		}
		sub := strings.TrimPrefix(e.Rel, it.rel+"/")
		if it.rel == "" {
			sub = e.Rel
		}
		target := path.Join(destRel, sub)
		n, err := c.node(e.Rel, &e.St)
		if err != nil || n == nil {
			return err
		}
		if n.typ == unix.S_IFREG && e.St.Nlink > 1 {
			k := [2]uint64{e.St.Dev, e.St.Ino}
			if first, ok := links[k]; ok {
				n.hardlink = first
			} else {
				links[k] = target
			}
		}
		err = c.w.put(c.t, target, n)
		if errors.Is(err, unix.ENOENT) {
			// An excluded directory whose exception brought a name
			// back is not copied itself: its name is made, as Docker
			// makes the parents of what its context holds.
			if err := c.parents(parentOf(target)); err != nil {
				return err
			}
			err = c.w.put(c.t, target, n)
		}
		return err
	}
	if c.src.ctx != nil {
		return c.src.ctx.Walk(it.rel, walk)
	}
	return contextdir.WalkTree(c.src.t, it.rel, nil, false, walk)
}
