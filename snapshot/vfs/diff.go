package vfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// diffVFS compares the plain directory rootfs with files, the merged file
// list of the snapshot it was copied from, whose files are in lower ("":
// no parent). Files whose ctime is older than cutoff have not been
// touched since the copy and are taken as they are without reading their
// xattrs; every other file is compared by metadata (type, mode, owner,
// size, mtime, link target, device, xattrs). A regular file whose ctime
// moved while the rest of its metadata did not (renamed over, linked,
// touched back) is compared by content with its copy in lower; no other
// content is read but that of the files the layer carries. Paths in the
// list that are gone become whiteouts; files sharing an inode stay
// hardlinks.
func diffVFS(ctx context.Context, rootfs, lower string, files layer.Files, cutoff time.Time, o layer.Ownership) (*layer.Diff, error) {
	w := &vfsWalk{ctx: ctx, lower: lower, files: files, o: o, groups: map[inodeKey][]int{}, children: map[string][]string{}}
	w.cutoff = math.MinInt64
	if !cutoff.IsZero() {
		w.cutoff = cutoff.UnixNano()
	}
	for p := range files {
		if p == "." {
			continue
		}
		dir, base := split(p)
		w.children[dir] = append(w.children[dir], base)
	}
	var st unix.Stat_t
	if err := unix.Lstat(rootfs, &st); err != nil {
		return nil, &os.PathError{Op: "lstat", Path: rootfs, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("rootfs %s is not a directory", rootfs)
	}
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	w.t = t
	if err := w.walkTree(); err != nil {
		return nil, err
	}
	changes, err := w.finish()
	if err != nil {
		return nil, err
	}
	return layer.NewDiff(rootfs, changes), nil
}

// node is a change the walk found, with what it needs to decide whether
// the layer carries it.
type node struct {
	layer.Change
	parent  int // index of the parent directory's node, -1 for the root
	st      unix.Stat_t
	changed bool
	keep    bool
}

type vfsWalk struct {
	ctx context.Context
	// t is the rootfs: every name is resolved inside it, so that a
	// symlink a container swaps in during the walk leads nowhere else.
	t        *fsx.Tree
	lower    string
	files    layer.Files
	o        layer.Ownership
	cutoff   int64
	all      []*node
	groups   map[inodeKey][]int
	children map[string][]string
	// walk spreads the scans of directories over every core.
	walk *fsx.Walk
}

func join(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

func split(p string) (dir, base string) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i], p[i+1:]
		}
	}
	return ".", p
}

// dirScan is what the walk found in one directory: its nodes in layer
// order, and for each subdirectory among them, what is below it.
type dirScan struct {
	nodes []*node
	subs  map[int]*dirScan
}

// walkTree scans the rootfs and appends what it found to w.all in layer
// order. Directories are scanned on every core; the order of the result
// does not depend on it.
func (w *vfsWalk) walkTree() error {
	w.walk = fsx.NewWalk(runtime.GOMAXPROCS(0) - 1)
	root, err := w.scan(".", nil)
	if err != nil {
		return err
	}
	w.flatten(root, -1)
	return nil
}

func (w *vfsWalk) flatten(d *dirScan, parent int) {
	for i, n := range d.nodes {
		n.parent = parent
		idx := len(w.all)
		w.all = append(w.all, n)
		if sub := d.subs[i]; sub != nil {
			w.flatten(sub, idx)
		} else if n.Kind == layer.ChangeFile && n.st.Mode&unix.S_IFMT == unix.S_IFREG && n.st.Nlink > 1 {
			k := inodeKey{n.st.Dev, n.st.Ino}
			w.groups[k] = append(w.groups[k], idx)
		}
	}
}

// subScan is a subdirectory's scan, written by the goroutine that makes
// it only.
type subScan struct {
	i    int
	scan *dirScan
}

// scan reads the directory rel (whose stat is st; nil for the root) and
// the directories below it.
func (w *vfsWalk) scan(rel string, st *unix.Stat_t) (*dirScan, error) {
	if err := w.ctx.Err(); err != nil {
		return nil, err
	}
	dfd, err := w.t.Open(rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", rel, err)
	}
	defer unix.Close(dfd)
	defer w.lend(dfd, st)()
	names, onDisk, err := w.names(dfd, rel)
	if err != nil {
		return nil, err
	}
	d := &dirScan{}
	var subs []*subScan
	g := w.walk.Group()
	for _, name := range names {
		p := join(rel, name)
		if !onDisk[name] {
			d.nodes = append(d.nodes, &node{Change: layer.Change{Kind: layer.ChangeWhiteout, Path: p}, changed: true})
			continue
		}
		n, t, err := w.look(dfd, name, p)
		if err != nil {
			g.Wait()
			return nil, err
		}
		switch {
		case n == nil:
		case t == layer.TypeDir:
			sub := &subScan{i: len(d.nodes)}
			subs = append(subs, sub)
			d.nodes = append(d.nodes, n)
			if err := g.Go(func() (err error) { sub.scan, err = w.scan(p, &n.st); return err }); err != nil {
				g.Wait()
				return nil, err
			}
		case t == layer.TypeReg && n.st.Nlink > 1, n.changed:
			d.nodes = append(d.nodes, n)
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if len(subs) > 0 {
		d.subs = make(map[int]*dirScan, len(subs))
	}
	for _, sub := range subs {
		d.subs[sub.i] = sub.scan
	}
	return d, nil
}

// lend gives the owner rights on the directory dfd (of stat st; nil for
// the root) for the time of its walk, and returns what takes them back:
// a rootless rootfs keeps the image's modes, 0000 directories too. The
// magic link is the directory itself.
func (w *vfsWalk) lend(dfd int, st *unix.Stat_t) func() {
	if !w.o.Rootless || st == nil {
		return func() {}
	}
	m := st.Mode & 0o7777
	if m&0o700 == 0o700 || unix.Chmod(fsx.FdPath(dfd), m|0o700) != nil {
		return func() {}
	}
	return func() { unix.Chmod(fsx.FdPath(dfd), m) }
}

// names lists, sorted, the names of the directory dfd (rel) on disk and
// those the file list has there (gone ones: whiteouts).
func (w *vfsWalk) names(dfd int, rel string) ([]string, map[string]bool, error) {
	disk, err := fsx.ReadDirNames(dfd, rel)
	if err != nil {
		return nil, nil, err
	}
	onDisk := make(map[string]bool, len(disk))
	names := disk
	for _, n := range disk {
		onDisk[n] = true
	}
	for _, n := range w.children[rel] {
		if !onDisk[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names, onDisk, nil
}

// look stats name in the directory dfd (at p) and, unless its ctime says
// it was not touched since the rootfs was made, describes it and
// compares it with the file list's entry. It returns nil for a socket,
// which has no tar form (a layer leaves it out, as docker commit does).
func (w *vfsWalk) look(dfd int, name, p string) (*node, byte, error) {
	n := &node{Change: layer.Change{Kind: layer.ChangeFile, Path: p}}
	if err := unix.Fstatat(dfd, name, &n.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, 0, &os.PathError{Op: "lstat", Path: p, Err: err}
	}
	n.Dev, n.Ino = n.st.Dev, n.st.Ino
	t, ok := layer.FileType(n.st.Mode)
	if !ok {
		return nil, 0, nil
	}
	old := w.files[p]
	untouched := old != nil && n.st.Ctim.Nano() < w.cutoff &&
		(old.Type == t || (old.Placeholder && t == layer.TypeReg))
	if untouched {
		return n, t, nil
	}
	if err := w.describeAt(dfd, name, n); err != nil {
		return nil, 0, err
	}
	n.changed = old == nil || !layer.SameEntry(n.Entry, old)
	if !n.changed && t == layer.TypeReg && old.Type == layer.TypeReg && n.st.Size > 0 {
		same, err := w.sameContent(p, n.st.Size)
		if err != nil {
			return nil, 0, err
		}
		n.changed = !same
	}
	return n, t, nil
}

// sameContent compares the regular file rel of the rootfs with the parent
// snapshot's, both size bytes long by their metadata.
func (w *vfsWalk) sameContent(rel string, size int64) (bool, error) {
	if w.lower == "" {
		return false, nil
	}
	a, err := w.t.OpenRegular(rel)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", rel, err)
	}
	defer a.Close()
	t, err := fsx.OpenTree(w.lower)
	if err != nil {
		return false, err
	}
	b, err := t.OpenRegular(rel)
	t.Close()
	if err != nil {
		// Not in the parent snapshot as a readable file: a change.
		return false, nil
	}
	defer b.Close()
	const chunk = 128 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for done := int64(0); done < size; {
		n := min(int64(chunk), size-done)
		if _, err := io.ReadFull(a, ba[:n]); err != nil {
			return false, fmt.Errorf("compare %s: %w", rel, err)
		}
		if _, err := io.ReadFull(b, bb[:n]); err != nil {
			return false, nil
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			return false, nil
		}
		done += n
	}
	return true, nil
}

// describe fills n.Entry from the disk, resolving n.Path inside the
// rootfs.
func (w *vfsWalk) describe(n *node) error {
	if n.Entry != nil {
		return nil
	}
	dir, base := split(n.Path)
	dfd, err := w.t.Dir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: n.Path, Err: err}
	}
	if st.Ino != n.st.Ino || st.Dev != n.st.Dev {
		return fmt.Errorf("%s: %w: replaced during the walk", n.Path, layer.ErrChangedDuringCommit)
	}
	return w.describeAt(dfd, base, n)
}

// describeAt fills n.Entry from base in the directory dfd: xattrs and
// link targets are read through the descriptor's magic link, never
// following base itself.
func (w *vfsWalk) describeAt(dfd int, base string, n *node) error {
	if n.Entry != nil {
		return nil
	}
	e, err := w.o.EntryAt(dfd, base, n.Path, &n.st, w.files[n.Path])
	if err != nil {
		return err
	}
	n.Entry = e
	return nil
}

// listKey names the hardlink group of a regular file of the list: the
// path its Link names, or its own.
func (w *vfsWalk) listKey(p string) string {
	if e := w.files[p]; e != nil && e.Type == layer.TypeReg && e.Link != "" {
		return e.Link
	}
	return p
}

// finish decides which nodes the layer carries and how, and returns
// their changes in layer order.
func (w *vfsWalk) finish() ([]*layer.Change, error) {
	for _, n := range w.all {
		if n.changed && (n.Kind != layer.ChangeFile || !(n.st.Mode&unix.S_IFMT == unix.S_IFREG && n.st.Nlink > 1)) {
			n.keep = true
		}
	}
	w.linkGroups()
	// A written entry brings its parent directories, with their
	// metadata.
	for _, n := range w.all {
		if !n.keep {
			continue
		}
		for p := n.parent; p >= 0 && !w.all[p].keep; p = w.all[p].parent {
			w.all[p].keep = true
		}
	}
	var out []*layer.Change
	for _, n := range w.all {
		if !n.keep {
			continue
		}
		if n.Kind == layer.ChangeFile || n.Kind == layer.ChangeLink {
			if err := w.describe(n); err != nil {
				return nil, err
			}
		}
		out = append(out, &n.Change)
	}
	w.all = nil
	return out, nil
}

// linkGroups decides how the names of each inode with several names, in
// layer order, go into the layer. Names that were in the list, unchanged,
// all of one hardlink group there, keep their content: names new to the
// list become links to the first of them. Anything else (metadata
// changed, names from several groups of the list, none from the list) is
// written whole from the disk, the first name with the content: metadata
// alone cannot tell which of the old contents the inode holds.
func (w *vfsWalk) linkGroups() {
	keys := make([]inodeKey, 0, len(w.groups))
	for k := range w.groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return w.groups[keys[i]][0] < w.groups[keys[j]][0] })
	for _, k := range keys {
		idx := w.groups[k]
		if len(idx) == 1 {
			w.all[idx[0]].keep = w.all[idx[0]].changed
			continue
		}
		anchor, whole := -1, false
		var fresh []int
		for _, j := range idx {
			n := w.all[j]
			old := w.files[n.Path]
			switch {
			case old == nil || old.Type != layer.TypeReg:
				fresh = append(fresh, j)
			case n.changed:
				whole = true
			case anchor < 0:
				anchor = j
			case w.listKey(n.Path) != w.listKey(w.all[anchor].Path):
				whole = true
			}
		}
		if whole || anchor < 0 {
			anchor, fresh = -1, idx
		}
		for _, j := range fresh {
			n := w.all[j]
			n.keep = true
			if anchor < 0 {
				anchor = j
				continue
			}
			n.Kind, n.LinkTo = layer.ChangeLink, w.all[anchor].Path
		}
	}
}
