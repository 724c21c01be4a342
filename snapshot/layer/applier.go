package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

func newApplier(dir string, opts ApplyOptions, files Files) (*applier, error) {
	if opts.Whiteouts == WhiteoutConvert && opts.Whiteouter == nil {
		return nil, errors.New("apply: whiteout conversion needs a Whiteouter")
	}
	t, err := fsx.OpenTree(dir)
	if err != nil {
		return nil, err
	}
	a := &applier{
		t: t, opts: opts, files: files, buf: make([]byte, 128*1024),
		seen:    seen{written: map[string]bool{}, upper: map[string]bool{}, dirty: map[string]bool{}, modeSet: map[string]bool{}},
		shadow:  shadowStore{fd: -1, payload: map[string]int{}, under: map[string]int{}},
		dirs:    dirCache{last: lastDir{fd: -1}, plain: map[string]bool{}},
		creator: creator{uid: opts.UID, gid: opts.GID, umask: 0o777},
	}
	if m, ok := fsx.Umask(); ok {
		a.creator.umask = m
	}
	if opts.DropCache {
		a.dropper = newCacheDropper()
	}
	if opts.Rootless {
		// The copy of the parent gave every directory owner rights so
		// this layer can write anywhere; put the image's modes back.
		for p, e := range files {
			if e.Type == TypeDir {
				a.seen.dirty[p] = true
			}
		}
	}
	return a, nil
}

// applier writes one layer's entries into a tree.
type applier struct {
	t       *fsx.Tree
	opts    ApplyOptions
	files   Files
	buf     []byte
	seen    seen
	shadow  shadowStore
	dirs    dirCache
	creator creator
	// dropper, when set, takes the files written (ApplyOptions.DropCache).
	dropper *cacheDropper
}

// seen is what the layer has done so far.
type seen struct {
	// written holds the paths this layer wrote: whiteouts only hide
	// what lower layers hold.
	written map[string]bool
	// upper holds the directories above the paths in written: a
	// whiteout or an opaque marker keeps them (and what this layer put
	// in them), as umoci and docker do.
	upper map[string]bool
	// dirty holds directories whose mode and mtime are set at the end,
	// after their children are written.
	dirty map[string]bool
	// modeSet lists directories this layer created with their final
	// mode: finish only sets their times.
	modeSet map[string]bool
}

// shadowStore keeps the files of this layer's entries that later
// entries replace (ShadowDir), for the rebuild.
type shadowStore struct {
	// dir is the shadow directory ("" : replaced files are deleted),
	// opened as fd when first needed.
	dir string
	fd  int
	// seq is the number of the entry being applied, counted from 0.
	seq int
	// payload maps the regular files with data this layer wrote to
	// their entry numbers, and under counts them by directory above
	// them: a later entry that replaces one moves it to dir instead of
	// deleting it, because rebuilding the layer needs its bytes.
	payload map[string]int
	under   map[string]int
}

// dirCache saves directory lookups from one entry to the next.
type dirCache struct {
	// last is the directory the previous entry went into: most entries
	// share theirs with the one before, and its descriptor saves a
	// resolution of the whole path per file.
	last lastDir
	// plain remembers dirFor's plain answer by directory, for the next
	// time the entries come back to it; every entry that may remove a
	// directory or change its set-gid bit or ACLs empties it.
	plain map[string]bool
}

// creator is what a file this process creates gets without asking:
// owner uid:gid (in a directory without set-gid or default ACL),
// permissions masked by umask. A file whose entry asks for no more skips
// its chown and chmod.
type creator struct {
	uid, gid int
	umask    uint32
}

// lastDir is a directory descriptor kept from one entry to the next.
// plain says that a file created in it gets the creator's group and the
// umask's permissions: no set-gid bit, no default ACL.
type lastDir struct {
	name  string
	fd    int
	plain bool
}

// dirFor returns a descriptor of the directory dir, made with its
// parents when missing. It stays owned by the applier: the caller does
// not close it.
func (a *applier) dirFor(dir string) (int, error) {
	if a.dirs.last.fd >= 0 && a.dirs.last.name == dir {
		return a.dirs.last.fd, nil
	}
	a.forgetDir()
	fd, err := a.parent(dir)
	if err != nil {
		return -1, err
	}
	plain, ok := a.dirs.plain[dir]
	if !ok {
		var st unix.Stat_t
		plain = unix.Fstat(fd, &st) == nil && st.Mode&unix.S_ISGID == 0
		if plain {
			_, err := unix.Getxattr(fsx.FdPath(fd), "system.posix_acl_default", nil)
			plain = err == unix.ENODATA || err == unix.EOPNOTSUPP
		}
		a.dirs.plain[dir] = plain
	}
	a.dirs.last = lastDir{name: dir, fd: fd, plain: plain}
	return fd, nil
}

// dirsChanged forgets what dirFor learnt about directories: a directory
// may have been removed, replaced or given new metadata.
func (a *applier) dirsChanged() {
	clear(a.dirs.plain)
}

// forgetDir drops the kept directory descriptor. Every entry that may
// remove, replace or change that directory calls it first: the
// descriptor would still reach the old directory.
func (a *applier) forgetDir() {
	if a.dirs.last.fd >= 0 {
		unix.Close(a.dirs.last.fd)
	}
	a.dirs.last = lastDir{fd: -1}
}

func (a *applier) close() {
	a.dropper.stop()
	a.forgetDir()
	if a.shadow.fd >= 0 {
		unix.Close(a.shadow.fd)
		a.shadow.fd = -1
	}
	a.t.Close()
}

// cleanName turns a tar name into a slash-separated path relative to the
// root ("." for the root itself). Absolute names are taken as relative to
// the root; names that climb out of it are refused.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, name)
	}
	return n, nil
}

func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	dir, base := split(name)
	if a.dirs.last.fd >= 0 && (name == "." || strings.HasPrefix(base, whiteoutPrefix) ||
		a.dirs.last.name == name || strings.HasPrefix(a.dirs.last.name, name+"/")) {
		// The entry may remove or replace the kept directory, or change
		// its mode or default ACL.
		a.forgetDir()
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base)
	}
	e := &Entry{
		Path:     name,
		Mode:     uint32(hdr.Mode) & 0o7777,
		UID:      hdr.Uid,
		GID:      hdr.Gid,
		Mtime:    hdr.ModTime.UnixNano(),
		DevMajor: hdr.Devmajor,
		DevMinor: hdr.Devminor,
	}
	if hdr.ModTime.IsZero() {
		e.Mtime = 0
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, paxXattr); ok && x != "" {
			if e.Xattrs == nil {
				e.Xattrs = map[string][]byte{}
			}
			e.Xattrs[x] = []byte(v)
		}
	}
	if name == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("%w: the root can only be a directory", ErrUnsafePath)
		}
		e.Type = TypeDir
		return a.rootDir(e)
	}
	dfd, err := a.dirFor(dir)
	if err != nil {
		return err
	}
	a.seen.written[name] = true
	for p := dir; p != "." && !a.seen.upper[p]; p, _ = split(p) {
		a.seen.upper[p] = true
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		e.Type, e.Size = TypeReg, hdr.Size
		return a.regular(dfd, base, e, r)
	case tar.TypeDir:
		e.Type = TypeDir
		return a.directory(dfd, base, e)
	case tar.TypeSymlink:
		e.Type, e.Link = TypeSymlink, hdr.Linkname
		return a.symlink(dfd, base, e)
	case tar.TypeLink:
		return a.hardlink(dfd, base, name, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		e.Type = map[byte]byte{tar.TypeChar: TypeChar, tar.TypeBlock: TypeBlock, tar.TypeFifo: TypeFifo}[hdr.Typeflag]
		return a.node(dfd, base, e)
	}
	return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
}

// parent returns a descriptor of the directory dir, creating it (and its
// parents) when missing.
func (a *applier) parent(dir string) (int, error) {
	return a.t.MkdirAll(dir, a.implicitDir)
}

// implicitDir records a directory the layer needs but does not list: it
// takes the metadata a lower layer gives it (overlay), or root-owned
// 0755.
func (a *applier) implicitDir(p string) {
	a.seen.dirty[p] = true
	delete(a.seen.modeSet, p)
	if old := a.files[p]; old != nil && old.Type == TypeDir {
		return
	}
	e := &Entry{Path: p, Type: TypeDir, Mode: 0o755, Mtime: time.Now().UnixNano()}
	for _, low := range a.opts.Lower {
		var st unix.Stat_t
		if err := lstatIn(low, p, &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			e.Mode = st.Mode & 0o7777
			e.Mtime = st.Mtim.Nano()
			if le := a.files[p]; le != nil {
				e = le
			}
			break
		}
	}
	a.files[p] = e
	a.owner(-1, p, "", e)
}

// lstatIn stats name inside the directory root without leaving it.
func lstatIn(root, name string, st *unix.Stat_t) error {
	t, err := fsx.OpenTree(root)
	if err != nil {
		return err
	}
	defer t.Close()
	fd, err := t.Open(name, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstat(fd, st)
}

// finish sets the mode and mtime of every directory the layer created or
// changed, deepest first, so that neither a child's creation nor a
// read-only parent gets in the way.
func (a *applier) finish() error {
	dirs := make([]string, 0, len(a.seen.dirty))
	for p := range a.seen.dirty {
		dirs = append(dirs, p)
	}
	sortByDepth(dirs, childrenFirst)
	for _, p := range dirs {
		e := a.files[p]
		if e == nil || e.Type != TypeDir {
			continue
		}
		fd, err := a.t.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return err
		}
		// The magic link is the directory itself, never a symlink.
		if !a.seen.modeSet[p] {
			err = unix.Chmod(fsx.FdPath(fd), e.Mode)
		}
		if err == nil {
			ts := unix.NsecToTimespec(e.Mtime)
			err = unix.UtimesNano(fsx.FdPath(fd), []unix.Timespec{ts, ts})
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %s: %w", p, err)
		}
	}
	return nil
}

// depthOrder says which end sortByDepth puts first.
type depthOrder bool

const (
	parentsFirst  depthOrder = false
	childrenFirst depthOrder = true
)

// sortByDepth orders cleaned relative paths ("." the root) by depth,
// parents or children first; paths of one depth by name.
func sortByDepth(paths []string, order depthOrder) {
	depth := func(p string) int {
		if p == "." {
			return -1
		}
		return strings.Count(p, "/")
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := depth(paths[i]), depth(paths[j])
		if di != dj {
			return (di > dj) == bool(order)
		}
		return paths[i] < paths[j]
	})
}
