package snapshot

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/overlay"
)

// ErrChangedDuringCommit means a file changed size while its content was
// written into a layer: the rootfs was in use.
var ErrChangedDuringCommit = errors.New("file changed while it was committed")

// selinuxXattr is the host's label of a file, not image content: the
// diff never carries it.
const selinuxXattr = "security.selinux"

// noopID in a rootless owner xattr means "the file's own owner": root.
const noopID = 1<<32 - 1

type diffKind int

const (
	// diffFile is an entry with its metadata (and a regular file's
	// content, read from the diff's root at path).
	diffFile diffKind = iota
	// diffLink is a hardlink to linkTo.
	diffLink
	// diffWhiteout deletes path.
	diffWhiteout
	// diffOpaque makes the directory path hide what lower layers hold.
	diffOpaque
)

// diffEntry is one entry of a layer diff.
type diffEntry struct {
	kind   diffKind
	path   string
	e      *Entry
	linkTo string

	// Bookkeeping of the vfs walk.
	parent  int // index of the parent directory entry, -1 for the root
	st      unix.Stat_t
	changed bool
	keep    bool
	clamped bool
}

// Diff is the change of a rootfs against the snapshot it was made from,
// as the entries of a layer in the order they are written: depth first,
// each directory's names in byte order, a directory before its contents.
type Diff struct {
	entries []*diffEntry
	// root is the directory the entries' files are read from (a rootfs
	// or an upper directory), always through names resolved inside it.
	root string
}

// Empty says whether nothing changed: commit then adds no layer.
func (d *Diff) Empty() bool { return len(d.entries) == 0 }

// Len is the number of layer entries (whiteouts included).
func (d *Diff) Len() int { return len(d.entries) }

// Paths lists the entries as a layer names them, for messages and tests:
// whiteouts as .wh. names, hardlinks as "NAME -> TARGET".
func (d *Diff) Paths() []string {
	out := make([]string, 0, len(d.entries))
	for _, de := range d.entries {
		out = append(out, de.tarName())
	}
	return out
}

func (de *diffEntry) tarName() string {
	switch de.kind {
	case diffWhiteout:
		return overlay.WhiteoutName(de.path)
	case diffOpaque:
		return overlay.OpaqueName(de.path)
	case diffLink:
		return de.path + " -> " + de.linkTo
	}
	if de.e != nil && de.e.Type == TypeDir {
		return de.path + "/"
	}
	return de.path
}

// owners turns what a rootfs shows of a file's owner back into the
// image's owner.
type owners struct {
	// rootless: the rootfs was written under a mapping (see
	// StoreOptions): image owners it lacks are in the
	// user.rootlesscontainers xattr, the file belonging to what stands
	// for the image's root.
	rootless bool
	// toImage (rootless) maps image IDs onto the IDs this process sees
	// the rootfs's files owned by; IDs it does not map are taken as they
	// are (in strata's namespace, what the container set).
	toImage *IDMap
	// idMap (not rootless) shifts image IDs to host IDs (--uid-map).
	idMap *IDMap
}

// owner is the image's owner of a file the rootfs shows as st. In a
// rootless rootfs the xattr speaks only for a uid or gid that is still
// the one written with it, root's: an owner the container changed to
// another ID is taken from the file, as the namespace maps it.
func (o owners) owner(name string, st *unix.Stat_t, xattrs map[string][]byte) (int, int, error) {
	uid, gid := int(st.Uid), int(st.Gid)
	if !o.rootless {
		u, g, err := o.idMap.ToContainer(uid, gid)
		if err != nil {
			return 0, 0, fmt.Errorf("owner %d:%d of %s: %w", uid, gid, name, err)
		}
		return u, g, nil
	}
	if o.toImage != nil {
		if u, ok := reverse(o.toImage.UIDs, uid); ok {
			uid = u
		}
		if g, ok := reverse(o.toImage.GIDs, gid); ok {
			gid = g
		}
	}
	if v, ok := xattrs[RootlessXattr]; ok && (uid == 0 || gid == 0) {
		xu, xg, err := DecodeRootless(v)
		if err != nil {
			return 0, 0, fmt.Errorf("owner of %s: %w", name, err)
		}
		// umoci writes 2^32-1, "as the file is", for root.
		if uint32(xu) == noopID {
			xu = 0
		}
		if uint32(xg) == noopID {
			xg = 0
		}
		if uid == 0 {
			uid = xu
		}
		if gid == 0 {
			gid = xg
		}
	}
	return uid, gid, nil
}

func fileType(mode uint32) (byte, bool) {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return TypeReg, true
	case unix.S_IFDIR:
		return TypeDir, true
	case unix.S_IFLNK:
		return TypeSymlink, true
	case unix.S_IFCHR:
		return TypeChar, true
	case unix.S_IFBLK:
		return TypeBlock, true
	case unix.S_IFIFO:
		return TypeFifo, true
	}
	return 0, false
}

// settable says whether an unprivileged extraction could have written the
// xattr name on a file of type t: only user.* on files and directories.
func settable(name string, t byte) bool {
	return strings.HasPrefix(name, "user.") && (t == TypeReg || t == TypeDir)
}

// diskEntry describes the file full (at rel in the rootfs) as the image
// would: owners mapped back, placeholders seen as the devices they stand
// for, and in rootless mode what the user could not write (xattrs outside
// user.*, symlink owners) taken from old, the parent's entry.
func (o owners) diskEntry(full, rel string, st *unix.Stat_t, xattrs map[string][]byte, old *Entry) (*Entry, error) {
	t, ok := fileType(st.Mode)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported file type %o (a socket cannot be part of a layer)", rel, st.Mode&unix.S_IFMT)
	}
	e := &Entry{Path: rel, Type: t, Mode: st.Mode & 0o7777, Mtime: st.Mtim.Nano()}
	uid, gid, err := o.owner(rel, st, xattrs)
	if err != nil {
		return nil, err
	}
	e.UID, e.GID = uid, gid
	for k, v := range xattrs {
		if k == selinuxXattr || (o.rootless && k == RootlessXattr) {
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = map[string][]byte{}
		}
		e.Xattrs[k] = v
	}
	switch t {
	case TypeReg:
		e.Size = st.Size
	case TypeSymlink:
		l, err := os.Readlink(full)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		e.Link = l
	case TypeChar, TypeBlock:
		e.DevMajor, e.DevMinor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	if o.rootless && old != nil {
		if old.Placeholder && t == TypeReg && st.Size == 0 {
			e.Type, e.Size, e.DevMajor, e.DevMinor, e.Placeholder = old.Type, 0, old.DevMajor, old.DevMinor, true
		}
		if t == TypeSymlink && old.Type == TypeSymlink {
			// A symlink carries no xattr: the list keeps what a
			// root-owned one stands for.
			if e.UID == 0 {
				e.UID = old.UID
			}
			if e.GID == 0 {
				e.GID = old.GID
			}
		}
		if old.Type == e.Type {
			for k, v := range old.Xattrs {
				if _, ok := e.Xattrs[k]; !ok && !settable(k, t) && k != RootlessXattr {
					if e.Xattrs == nil {
						e.Xattrs = map[string][]byte{}
					}
					e.Xattrs[k] = v
				}
			}
		}
	}
	return e, nil
}

// entryAt describes base in the directory dfd (at rel) as diskEntry does.
func (o owners) entryAt(dfd int, base, rel string, st *unix.Stat_t, old *Entry) (*Entry, error) {
	p := fsx.ProcPath(dfd, base)
	x, err := fsx.ReadXattrs(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return o.diskEntry(p, rel, st, x, old)
}

// sameEntry compares what a layer entry carries, content aside.
func sameEntry(a, b *Entry) bool {
	if a.Type != b.Type || a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Mtime != b.Mtime {
		return false
	}
	switch a.Type {
	case TypeReg:
		if a.Size != b.Size {
			return false
		}
	case TypeSymlink:
		if a.Link != b.Link {
			return false
		}
	case TypeChar, TypeBlock:
		if a.DevMajor != b.DevMajor || a.DevMinor != b.DevMinor {
			return false
		}
	}
	ax, bx := a.Xattrs, b.Xattrs
	if len(ax) != len(bx) {
		return false
	}
	for k, v := range ax {
		w, ok := bx[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

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
func diffVFS(rootfs, lower string, files Files, cutoff time.Time, o owners) (*Diff, error) {
	w := &vfsWalk{lower: lower, files: files, o: o, groups: map[inodeKey][]int{}, children: map[string][]string{}}
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
	if err := w.walk(); err != nil {
		return nil, err
	}
	d, err := w.finish()
	if err != nil {
		return nil, err
	}
	d.root = rootfs
	return d, nil
}

type vfsWalk struct {
	// t is the rootfs: every name is resolved inside it, so that a
	// symlink a container swaps in during the walk leads nowhere else.
	t        *fsx.Tree
	lower    string
	files    Files
	o        owners
	cutoff   int64
	all      []*diffEntry
	groups   map[inodeKey][]int
	children map[string][]string
	// sem bounds the directories scanned at once beside the caller's.
	sem chan struct{}
}

func join(dir, base string) string {
	if dir == "." {
		return base
	}
	return dir + "/" + base
}

// dirScan is what the walk found in one directory: its entries in layer
// order, and for each subdirectory among them, what is below it.
type dirScan struct {
	entries []*diffEntry
	subs    map[int]*dirScan
}

// walk scans the rootfs and appends what it found to w.all in layer
// order. Directories are scanned on every core; the order of the result
// does not depend on it.
func (w *vfsWalk) walk() error {
	w.sem = make(chan struct{}, runtime.GOMAXPROCS(0)-1)
	root, err := w.scan(".", nil)
	if err != nil {
		return err
	}
	w.flatten(root, -1)
	return nil
}

func (w *vfsWalk) flatten(d *dirScan, parent int) {
	for i, de := range d.entries {
		de.parent = parent
		idx := len(w.all)
		w.all = append(w.all, de)
		if sub := d.subs[i]; sub != nil {
			w.flatten(sub, idx)
		} else if de.kind == diffFile && de.st.Mode&unix.S_IFMT == unix.S_IFREG && de.st.Nlink > 1 {
			k := inodeKey{de.st.Dev, de.st.Ino}
			w.groups[k] = append(w.groups[k], idx)
		}
	}
}

// scan reads the directory rel (whose stat is st; nil for the root) and
// the directories below it.
func (w *vfsWalk) scan(rel string, st *unix.Stat_t) (*dirScan, error) {
	dfd, err := w.t.Open(rel, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", rel, err)
	}
	defer unix.Close(dfd)
	if w.o.rootless && st != nil {
		// A rootless rootfs keeps the image's modes, 0000 directories
		// too: lend the owner rights for the time of the walk. The
		// magic link is the directory itself.
		if m := st.Mode & 0o7777; m&0o700 != 0o700 {
			if err := unix.Chmod(fsx.FdPath(dfd), m|0o700); err == nil {
				defer unix.Chmod(fsx.FdPath(dfd), m)
			}
		}
	}
	disk, err := fsx.ReadDirNames(dfd, rel)
	if err != nil {
		return nil, err
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
	d := &dirScan{}
	type slot struct {
		i    int
		scan *dirScan
		err  error
	}
	var slots []*slot
	var wg sync.WaitGroup
	// Scans already started finish before an error returns.
	fail := func(err error) (*dirScan, error) {
		wg.Wait()
		return nil, err
	}
	for _, n := range names {
		p := join(rel, n)
		old := w.files[p]
		if !onDisk[n] {
			d.entries = append(d.entries, &diffEntry{kind: diffWhiteout, path: p, changed: true})
			continue
		}
		de := &diffEntry{kind: diffFile, path: p}
		if err := unix.Fstatat(dfd, n, &de.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail(&os.PathError{Op: "lstat", Path: p, Err: err})
		}
		t, ok := fileType(de.st.Mode)
		if !ok {
			// A socket a container left behind has no tar form; a
			// layer leaves it out, as docker commit does.
			continue
		}
		untouched := old != nil && de.st.Ctim.Nano() < w.cutoff &&
			(old.Type == t || (old.Placeholder && t == TypeReg))
		if !untouched {
			if err := w.describeAt(dfd, n, de); err != nil {
				return fail(err)
			}
			de.changed = old == nil || !sameEntry(de.e, old)
			if !de.changed && t == TypeReg && old.Type == TypeReg && de.st.Size > 0 {
				same, err := w.sameContent(p, de.st.Size)
				if err != nil {
					return fail(err)
				}
				de.changed = !same
			}
		}
		switch {
		case t == TypeDir:
			sl := &slot{i: len(d.entries)}
			slots = append(slots, sl)
			d.entries = append(d.entries, de)
			// Each scan writes its own slot only.
			run := func() { sl.scan, sl.err = w.scan(p, &de.st) }
			select {
			case w.sem <- struct{}{}:
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-w.sem }()
					run()
				}()
			default:
				run()
			}
		case t == TypeReg && de.st.Nlink > 1, de.changed:
			d.entries = append(d.entries, de)
		}
	}
	wg.Wait()
	if len(slots) > 0 {
		d.subs = make(map[int]*dirScan, len(slots))
	}
	for _, sl := range slots {
		if sl.err != nil {
			return nil, sl.err
		}
		d.subs[sl.i] = sl.scan
	}
	return d, nil
}

// sameContent compares the regular file rel of the rootfs with the parent
// snapshot's, both size bytes long by their metadata.
func (w *vfsWalk) sameContent(rel string, size int64) (bool, error) {
	if w.lower == "" {
		return false, nil
	}
	a, err := treeGetter{w.t}.Get(rel)
	if err != nil {
		return false, fmt.Errorf("compare %s: %w", rel, err)
	}
	defer a.Close()
	t, err := fsx.OpenTree(w.lower)
	if err != nil {
		return false, err
	}
	b, err := treeGetter{t}.Get(rel)
	t.Close()
	if err != nil {
		// Not in the parent snapshot as a readable file: a change.
		return false, nil
	}
	defer b.Close()
	const chunk = 128 << 10
	ba, bb := make([]byte, chunk), make([]byte, chunk)
	for done := int64(0); done < size; {
		n := int64(chunk)
		if size-done < n {
			n = size - done
		}
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

// describe fills de.e from the disk, resolving de.path inside the rootfs.
func (w *vfsWalk) describe(de *diffEntry) error {
	if de.e != nil {
		return nil
	}
	dir, base := split(de.path)
	dfd, err := w.t.Dir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "lstat", Path: de.path, Err: err}
	}
	if st.Ino != de.st.Ino || st.Dev != de.st.Dev {
		return fmt.Errorf("%s: %w: replaced during the walk", de.path, ErrChangedDuringCommit)
	}
	return w.describeAt(dfd, base, de)
}

// describeAt fills de.e from base in the directory dfd: xattrs and link
// targets are read through the descriptor's magic link, never following
// base itself.
func (w *vfsWalk) describeAt(dfd int, base string, de *diffEntry) error {
	if de.e != nil {
		return nil
	}
	e, err := w.o.entryAt(dfd, base, de.path, &de.st, w.files[de.path])
	if err != nil {
		return err
	}
	de.e = e
	return nil
}

// listKey names the hardlink group of a regular file of the list: the
// path its Link names, or its own.
func (w *vfsWalk) listKey(p string) string {
	if e := w.files[p]; e != nil && e.Type == TypeReg && e.Link != "" {
		return e.Link
	}
	return p
}

func (w *vfsWalk) finish() (*Diff, error) {
	for _, de := range w.all {
		if de.changed && (de.kind != diffFile || !(de.st.Mode&unix.S_IFMT == unix.S_IFREG && de.st.Nlink > 1)) {
			de.keep = true
		}
	}
	// Hardlink groups: names of one inode, in layer order.
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
		// Names that were in the list, unchanged, all of one hardlink
		// group there, keep their content: names new to the list become
		// links to the first of them. Anything else (metadata changed,
		// names from several groups of the list, none from the list) is
		// written whole from the disk, the first name with the content:
		// metadata alone cannot tell which of the old contents the inode
		// holds.
		anchor, whole := -1, false
		var fresh []int
		for _, j := range idx {
			de := w.all[j]
			old := w.files[de.path]
			switch {
			case old == nil || old.Type != TypeReg:
				fresh = append(fresh, j)
			case de.changed:
				whole = true
			case anchor < 0:
				anchor = j
			case w.listKey(de.path) != w.listKey(w.all[anchor].path):
				whole = true
			}
		}
		if whole || anchor < 0 {
			anchor, fresh = -1, idx
		}
		for _, j := range fresh {
			de := w.all[j]
			de.keep = true
			if anchor < 0 {
				anchor = j
				continue
			}
			de.kind, de.linkTo = diffLink, w.all[anchor].path
		}
	}
	// A written entry brings its parent directories, with their
	// metadata.
	for _, de := range w.all {
		if !de.keep {
			continue
		}
		for p := de.parent; p >= 0 && !w.all[p].keep; p = w.all[p].parent {
			w.all[p].keep = true
		}
	}
	d := &Diff{}
	for _, de := range w.all {
		if !de.keep {
			continue
		}
		if de.kind == diffFile || de.kind == diffLink {
			if err := w.describe(de); err != nil {
				return nil, err
			}
		}
		d.entries = append(d.entries, de)
	}
	w.all = nil
	return d, nil
}

// diffOverlay turns the upper directory of an overlay rootfs (form x) into
// a diff without looking at the layers below: whiteout devices become
// whiteouts, opaque directories a directory and its opaque marker, and
// every other entry, directories with their metadata, is written as it
// is. files (the parent's list) is only needed in rootless mode, to see
// placeholders and what the user could not write; it may be nil
// otherwise.
func diffOverlay(upper string, x overlay.Xattrs, files Files, o owners) (*Diff, error) {
	d := &Diff{root: upper}
	t, err := fsx.OpenTree(upper)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	first := map[inodeKey]string{}
	err = overlay.Changes(upper, x, func(c overlay.Change) error {
		switch c.Kind {
		case overlay.Deleted:
			d.entries = append(d.entries, &diffEntry{kind: diffWhiteout, path: c.Path})
			return nil
		}
		de := &diffEntry{kind: diffFile, path: c.Path}
		dir, base := split(c.Path)
		dfd, err := t.Dir(dir)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := unix.Fstatat(dfd, base, &de.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: c.Path, Err: err}
		}
		if _, ok := fileType(de.st.Mode); !ok {
			return nil // a socket: no tar form
		}
		var old *Entry
		if files != nil {
			old = files[c.Path]
		}
		e, err := o.diskEntry(fsx.ProcPath(dfd, base), c.Path, &de.st, c.Xattrs, old)
		if err != nil {
			return err
		}
		de.e = e
		if e.Type == TypeReg && de.st.Nlink > 1 {
			k := inodeKey{de.st.Dev, de.st.Ino}
			if p, ok := first[k]; ok {
				de.kind, de.linkTo = diffLink, p
			} else {
				first[k] = c.Path
			}
		}
		d.entries = append(d.entries, de)
		if c.Kind == overlay.OpaqueDir {
			d.entries = append(d.entries, &diffEntry{kind: diffOpaque, path: c.Path})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return d, nil
}

// WriteOptions tune how a diff is written as a layer.
type WriteOptions struct {
	// Clamp, when set, caps every mtime at this time, as BuildKit's
	// rewrite-timestamp does: files changed after it get it, older files
	// keep theirs, so that the same change gives the same layer.
	Clamp *time.Time
	// Rootless lends the owner read permission to files that lack it.
	Rootless bool
}

// WriteTar writes the diff as an uncompressed PAX tar layer: entries in
// the diff's order, owners as numbers with no names, xattrs as
// SCHILY.xattr records, mtimes with nanoseconds and no atime or ctime, so
// that the same change always gives the same bytes. Whiteouts and opaque
// markers are empty files owned by root with mtime 0.
func (d *Diff) WriteTar(w io.Writer, o WriteOptions) error {
	var t *fsx.Tree
	if d.root != "" {
		var err error
		if t, err = fsx.OpenTree(d.root); err != nil {
			return err
		}
		defer t.Close()
	}
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	for _, de := range d.entries {
		hdr := de.header(o.Clamp)
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", de.path, err)
		}
		if hdr.Typeflag == tar.TypeReg && de.kind == diffFile && hdr.Size > 0 {
			if t == nil {
				return fmt.Errorf("layer entry %s: diff has no root to read it from", de.path)
			}
			if err := copyContent(tw, t, de, hdr.Size, buf); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layer end: %w", err)
	}
	return nil
}

func (de *diffEntry) header(clamp *time.Time) *tar.Header {
	switch de.kind {
	case diffWhiteout, diffOpaque:
		name := overlay.WhiteoutName(de.path)
		if de.kind == diffOpaque {
			name = overlay.OpaqueName(de.path)
		}
		return &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "./"), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	}
	e := de.e
	mt := time.Unix(0, e.Mtime)
	if clamp != nil && mt.After(*clamp) {
		mt = *clamp
		de.clamped = true
	}
	hdr := &tar.Header{
		Name:    e.Path,
		Mode:    int64(e.Mode),
		Uid:     e.UID,
		Gid:     e.GID,
		ModTime: mt,
		Format:  tar.FormatPAX,
	}
	for _, k := range sortedKeys(e.Xattrs) {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+k] = string(e.Xattrs[k])
	}
	if de.kind == diffLink {
		hdr.Typeflag, hdr.Linkname = tar.TypeLink, de.linkTo
		return hdr
	}
	switch e.Type {
	case TypeReg:
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	case TypeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
	case TypeSymlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
	case TypeChar:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, e.DevMajor, e.DevMinor
	case TypeBlock:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeBlock, e.DevMajor, e.DevMinor
	case TypeFifo:
		hdr.Typeflag = tar.TypeFifo
	}
	return hdr
}

// copyContent writes size bytes of de's file, opened inside t (file
// without read permission are lent it for the time of the open); a file
// that is shorter or longer than when it was compared fails the layer
// rather than giving it a header that lies.
func copyContent(w io.Writer, t *fsx.Tree, de *diffEntry, size int64, buf []byte) error {
	f, err := treeGetter{t}.Get(de.path)
	if err != nil {
		return fmt.Errorf("layer entry %s: %w", de.path, err)
	}
	defer f.Close()
	if osf, ok := f.(*os.File); ok {
		var st unix.Stat_t
		if err := unix.Fstat(int(osf.Fd()), &st); err != nil {
			return fmt.Errorf("layer entry %s: %w", de.path, err)
		}
		if st.Ino != de.st.Ino || st.Dev != de.st.Dev {
			return fmt.Errorf("layer entry %s: %w: replaced", de.path, ErrChangedDuringCommit)
		}
	}
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf)
	if err != nil {
		return fmt.Errorf("layer entry %s: %w", de.path, err)
	}
	if n != size {
		return fmt.Errorf("layer entry %s: %w: %d bytes of %d", de.path, ErrChangedDuringCommit, n, size)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		return fmt.Errorf("layer entry %s: %w: longer than %d bytes", de.path, ErrChangedDuringCommit, size)
	}
	return nil
}

// fixClamped gives the files of rootfs whose mtime the layer clamped the
// layer's mtime, so that the rootfs and the new snapshot agree and the
// next commit does not see them as changed.
func (d *Diff) fixClamped(rootfs string, clamp time.Time) error {
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return err
	}
	defer t.Close()
	ts := unix.NsecToTimespec(clamp.UnixNano())
	for _, de := range d.entries {
		if !de.clamped || de.kind == diffWhiteout || de.kind == diffOpaque {
			continue
		}
		dir, base := split(de.path)
		dfd, err := t.Dir(dir)
		if err == nil {
			err = unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
			unix.Close(dfd)
		}
		if err != nil {
			return fmt.Errorf("set clamped mtime of %s: %w", de.path, err)
		}
	}
	return nil
}
