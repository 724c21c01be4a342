package snapshot

import (
	"archive/tar"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	tstar "github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
)

// Whiteout names from the OCI layer spec.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// RootlessXattr keeps the owner an unprivileged extraction could not
// apply, in the rootless-containers protobuf encoding umoci uses.
const RootlessXattr = "user.rootlesscontainers"

// paxXattr prefixes PAX records that carry extended attributes.
const paxXattr = "SCHILY.xattr."

// Apply extracts the uncompressed tar stream r onto dir as one layer,
// following the OCI layer spec, and updates files (the merged file list)
// to match. Every write is confined to dir; a name that climbs out of it
// is refused with ErrUnsafePath. On error dir is left half-written: the
// caller builds snapshots in a temporary directory and removes it. r is
// read to its end.
func Apply(dir string, r io.Reader, opts ApplyOptions, files Files) error {
	// One reader for both paths: the recording one reads sparse entries
	// region by region, where archive/tar would hand out their holes.
	return applyRecording(dir, r, opts, files, nil, "")
}

// applyRecording is Apply that also records the layer's tar-split
// metadata in p (nil: none), in the same pass and goroutine. tar-split's
// own reader (its fork of archive/tar) parses the stream; a tap under it
// keeps the raw bytes in front of each entry, which become the segments,
// and checksums each entry's data as the archive holds it (a sparse
// file's data without its holes, whose map is recorded with the entry).
// r is read to its end, padding after the end-of-archive marker
// included. Regular files that a later entry replaces are moved to the
// directory shadow (made when first needed; "" removes them instead),
// named by their entry's number, so that a rebuild finds every payload.
func applyRecording(dir string, r io.Reader, opts ApplyOptions, files Files, p *packer, shadow string) error {
	a, err := newApplier(dir, opts, files)
	if err != nil {
		return err
	}
	defer a.close()
	a.shadowDir = shadow
	segment := func(b []byte) error {
		if len(b) == 0 || p == nil {
			return nil
		}
		_, err := p.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: b})
		return err
	}
	tap := &tapReader{r: r}
	if p != nil {
		tap.sum = crc64.New(storage.CRCTable)
	}
	tr := tstar.NewReader(tap)
	for seq := 0; ; seq++ {
		if interrupted(opts.Done) {
			return ErrInterrupted
		}
		tap.startHeader()
		th, err := tr.Next()
		if err == io.EOF {
			if err := segment(tap.head); err != nil {
				return err
			}
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		// Entries start on 512-byte blocks: what precedes the first
		// block boundary is the padding of the entry before.
		frags, data, err := sparseFragments(th, tap.head, int(-tap.started&511))
		if err == nil && frags != nil {
			err = checkFragments(frags, th.Size, data)
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", th.Name, err)
		}
		if err := segment(tap.head); err != nil {
			return err
		}
		tap.startData()
		hdr := stdHeader(th)
		a.seq = seq
		var body io.Reader = tr
		var sd *sparseData
		if frags != nil {
			sd = newSparseData(tap, frags, th.Size, data)
			body = sd
		}
		if err := a.entry(hdr, body); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		// What the entry did not read (payloads of non-files) still
		// counts for the checksum.
		if sd != nil {
			err = sd.drain()
			// The tar reader skips the data it did not hand out.
			tap.fake = data
		} else {
			_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{tr}, a.buf)
		}
		if err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		if p == nil {
			continue
		}
		e := storage.Entry{Type: storage.FileType, Size: tap.data}
		if tap.data > 0 {
			e.Payload = tap.sum.Sum(nil)
		}
		e.SetName(th.Name)
		if err := p.addFile(e, frags); err != nil {
			return err
		}
	}
	if err := a.finish(); err != nil {
		return err
	}
	// Padding after the end-of-archive marker belongs to the layer too.
	for {
		n, err := io.ReadFull(r, a.buf)
		if serr := segment(a.buf[:n]); serr != nil {
			return serr
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// stdHeader converts a header of tar-split's tar reader.
func stdHeader(h *tstar.Header) *tar.Header {
	return &tar.Header{
		Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Size: h.Size,
		Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Uname: h.Uname, Gname: h.Gname,
		ModTime: h.ModTime, AccessTime: h.AccessTime, ChangeTime: h.ChangeTime,
		Devmajor: h.Devmajor, Devminor: h.Devminor, PAXRecords: h.PAXRecords,
	}
}

func newApplier(dir string, opts ApplyOptions, files Files) (*applier, error) {
	if opts.Whiteouts == WhiteoutConvert && opts.Whiteouter == nil {
		return nil, errors.New("apply: whiteout conversion needs a Whiteouter")
	}
	t, err := fsx.OpenTree(dir)
	if err != nil {
		return nil, err
	}
	a := &applier{
		t: t, opts: opts, files: files,
		written: map[string]bool{}, upper: map[string]bool{}, dirty: map[string]bool{},
		payload: map[string]int{}, under: map[string]int{}, shadowFd: -1,
		plainDirs: map[string]bool{}, modeSet: map[string]bool{},
		buf: make([]byte, 128*1024), last: lastDir{fd: -1},
		euid: unix.Geteuid(), egid: unix.Getegid(), umask: 0o777,
	}
	if m, ok := fsx.Umask(); ok {
		a.umask = m
	}
	if opts.DropCache {
		a.dropper = newCacheDropper()
	}
	if opts.Rootless {
		// The copy of the parent gave every directory owner rights so
		// this layer can write anywhere; put the image's modes back.
		for p, e := range files {
			if e.Type == TypeDir {
				a.dirty[p] = true
			}
		}
	}
	return a, nil
}

type applier struct {
	t     *fsx.Tree
	opts  ApplyOptions
	files Files
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
	buf   []byte

	// seq is the number of the entry being applied, counted from 0.
	seq int
	// payload maps the regular files with data this layer wrote to
	// their entry numbers, and under counts them by directory above
	// them: a later entry that replaces one moves it to shadowDir
	// (opened as shadowFd when first needed) instead of deleting it,
	// because rebuilding the layer needs its bytes.
	payload   map[string]int
	under     map[string]int
	shadowDir string
	shadowFd  int

	// last is the directory the previous entry went into: most entries
	// share theirs with the one before, and its descriptor saves a
	// resolution of the whole path per file.
	last lastDir
	// What a file this process creates gets without asking: owner
	// euid:egid (in a directory without set-gid or default ACL),
	// permissions masked by umask. A file whose entry asks for no more
	// skips its chown and chmod.
	euid, egid int
	umask      uint32
	// dropper, when set, takes the files written (ApplyOptions.DropCache).
	dropper *cacheDropper
	// plainDirs remembers dirFor's plain answer by directory, for the
	// next time the entries come back to it; every entry that may
	// remove a directory or change its set-gid bit or ACLs empties it.
	plainDirs map[string]bool
	// modeSet lists directories this layer created with their final
	// mode: finish only sets their times.
	modeSet map[string]bool
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
	if a.last.fd >= 0 && a.last.name == dir {
		return a.last.fd, nil
	}
	a.forgetDir()
	fd, err := a.parent(dir)
	if err != nil {
		return -1, err
	}
	plain, ok := a.plainDirs[dir]
	if !ok {
		var st unix.Stat_t
		plain = unix.Fstat(fd, &st) == nil && st.Mode&unix.S_ISGID == 0
		if plain {
			_, err := unix.Getxattr(fsx.FdPath(fd), "system.posix_acl_default", nil)
			plain = err == unix.ENODATA || err == unix.EOPNOTSUPP
		}
		a.plainDirs[dir] = plain
	}
	a.last = lastDir{name: dir, fd: fd, plain: plain}
	return fd, nil
}

// dirsChanged forgets what dirFor learnt about directories: a directory
// may have been removed, replaced or given new metadata.
func (a *applier) dirsChanged() {
	clear(a.plainDirs)
}

// ownedAsCreated says whether something this process creates in dfd gets
// e's owner without a chown: as root, in a directory that hands down no
// group, when e's owner on the host is who creates it.
func (a *applier) ownedAsCreated(dfd int, e *Entry) bool {
	if dfd != a.last.fd || !a.last.plain {
		return false
	}
	if a.opts.Rootless {
		// In a user namespace, an owner it maps needs no xattr either.
		if a.opts.Owners == nil {
			return false
		}
		uid, okU := lookup(a.opts.Owners.UIDs, e.UID)
		gid, okG := lookup(a.opts.Owners.GIDs, e.GID)
		return okU && okG && uid == a.euid && gid == a.egid
	}
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	return err == nil && uid == a.euid && gid == a.egid
}

// forgetDir drops the kept directory descriptor. Every entry that may
// remove, replace or change that directory calls it first: the
// descriptor would still reach the old directory.
func (a *applier) forgetDir() {
	if a.last.fd >= 0 {
		unix.Close(a.last.fd)
	}
	a.last = lastDir{fd: -1}
}

func (a *applier) close() {
	a.dropper.stop()
	a.forgetDir()
	if a.shadowFd >= 0 {
		unix.Close(a.shadowFd)
		a.shadowFd = -1
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
	if a.last.fd >= 0 && (name == "." || strings.HasPrefix(base, whiteoutPrefix) ||
		a.last.name == name || strings.HasPrefix(a.last.name, name+"/")) {
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
	a.written[name] = true
	for p := dir; p != "." && !a.upper[p]; p, _ = split(p) {
		a.upper[p] = true
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
	a.dirty[p] = true
	delete(a.modeSet, p)
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

// clear removes whatever is at base so a non-directory can take its
// place, and drops it from the file list. Files of this layer's earlier
// entries there are moved to the shadow directory first.
func (a *applier) clear(dfd int, base, name string) error {
	a.dirsChanged()
	if a.shadowDir != "" && len(a.payload) > 0 {
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

// notePayload records that the regular file base in dfd, the entry's
// name, holds the data of the current entry.
func (a *applier) notePayload(dfd int, base, name string) error {
	if a.shadowDir == "" {
		return nil
	}
	real, err := a.realName(dfd, base, name)
	if err != nil {
		return err
	}
	if real != name {
		// The name went through a symlink: the file is where the
		// symlink led, and a later entry may point the symlink
		// elsewhere before the rebuild asks for the name. The shadow
		// directory says where the data is (a symlink to the real
		// path), until the file itself is moved there.
		if err := a.openShadow(); err != nil {
			return err
		}
		if err := unix.Symlinkat(real, a.shadowFd, strconv.Itoa(a.seq)); err != nil {
			return &os.PathError{Op: "note the place of", Path: name, Err: err}
		}
		name = real
	}
	a.payload[name] = a.seq
	for p, _ := split(name); p != "."; p, _ = split(p) {
		a.under[p]++
	}
	return nil
}

// throughSymlink says whether a directory above name is a symlink.
func (a *applier) throughSymlink(name string) bool {
	for p, _ := split(name); p != "."; p, _ = split(p) {
		if e := a.files[p]; e != nil && e.Type == TypeSymlink {
			return true
		}
	}
	return false
}

// realName returns the path base in dfd has in the tree: name, unless a
// directory above name is a symlink.
func (a *applier) realName(dfd int, base, name string) (string, error) {
	if !a.throughSymlink(name) {
		return name, nil
	}
	dir, err := a.realDir(dfd)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if dir == "." {
		return base, nil
	}
	return dir + "/" + base, nil
}

// realDir returns the path of the directory dfd relative to the root.
func (a *applier) realDir(dfd int) (string, error) {
	root, err := os.Readlink(fsx.FdPath(a.t.Fd()))
	if err != nil {
		return "", err
	}
	dir, err := os.Readlink(fsx.FdPath(dfd))
	if err != nil {
		return "", err
	}
	if dir == root {
		return ".", nil
	}
	rel, ok := strings.CutPrefix(dir, strings.TrimSuffix(root, "/")+"/")
	if !ok {
		return "", fmt.Errorf("%w: %s is not under %s", ErrUnsafePath, dir, root)
	}
	return rel, nil
}

// openShadow makes and opens the shadow directory when first needed.
func (a *applier) openShadow() error {
	if a.shadowFd >= 0 {
		return nil
	}
	if err := os.Mkdir(a.shadowDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fd, err := unix.Open(a.shadowDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: a.shadowDir, Err: err}
	}
	a.shadowFd = fd
	return nil
}

func (a *applier) dropPayload(name string) {
	delete(a.payload, name)
	for p, _ := split(name); p != "."; p, _ = split(p) {
		if a.under[p]--; a.under[p] <= 0 {
			delete(a.under, p)
		}
	}
}

// keepPayloads moves base in dfd (the path name), or the files under it
// that hold payloads of this layer's entries, to the shadow directory:
// a rename, no copy. Only directories that hold such files are read.
func (a *applier) keepPayloads(dfd int, base, name string) error {
	if seq, ok := a.payload[name]; ok {
		if err := a.shadow(dfd, base, name, seq); err != nil {
			return err
		}
		return nil
	}
	if a.under[name] == 0 {
		return nil
	}
	fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOTDIR || err == unix.ELOOP || err == unix.ENOENT {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(fd)
	names, err := fsx.ReadDirNames(fd, name)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := a.keepPayloads(fd, n, name+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

// shadow moves the file base in dfd, the data of entry seq, to the
// shadow directory.
func (a *applier) shadow(dfd int, base, name string, seq int) error {
	if err := a.openShadow(); err != nil {
		return fmt.Errorf("keep replaced file %s: %w", name, err)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink > 1 {
		// Another name of this layer links the file: a rename would
		// add a link the image does not have (overlay shows link
		// counts), so the bytes are copied instead.
		if err := a.shadowCopy(dfd, base, name, seq); err != nil {
			return err
		}
	} else if err := unix.Renameat(dfd, base, a.shadowFd, strconv.Itoa(seq)); err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	a.dropPayload(name)
	return nil
}

// shadowCopy copies the file base in dfd to the shadow directory as
// the data of entry seq, holes kept.
func (a *applier) shadowCopy(dfd int, base, name string, seq int) error {
	src, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.EACCES {
		// An unprivileged owner lends itself read rights for the open
		// (the other names keep the file's mode).
		var st unix.Stat_t
		if err = unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
			if err = unix.Fchmodat(dfd, base, (st.Mode&0o7777)|0o400, 0); err == nil {
				src, err = unix.Openat(dfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if cerr := unix.Fchmodat(dfd, base, st.Mode&0o7777, 0); err == nil {
					err = cerr
				}
			}
		}
	}
	if err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	defer unix.Close(src)
	// A symlink saying where the file was goes: the file takes its place.
	if err := unix.Unlinkat(a.shadowFd, strconv.Itoa(seq), 0); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	dst, err := unix.Openat(a.shadowFd, strconv.Itoa(seq), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return &os.PathError{Op: "keep replaced file", Path: name, Err: err}
	}
	err = copyHoley(dst, src, a.buf)
	if cerr := unix.Close(dst); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keep replaced file %s: %w", name, err)
	}
	return nil
}

func (a *applier) regular(dfd int, base string, e *Entry, r io.Reader) error {
	// Most names are new: try the create first and clear the name only
	// when it is taken, rather than an unlink for every file. O_EXCL
	// fails on whatever is there, a symlink included.
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// As root, a file whose owner is ours and whose permissions the
	// umask keeps is created with them: no chown, no chmod (a chown
	// would clear set-id bits, so those still take both).
	create, chown, chmod := uint32(0o600), true, true
	if !a.opts.Rootless && dfd == a.last.fd && a.last.plain {
		uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
		if err != nil {
			return fmt.Errorf("owner of %s: %w", e.Path, err)
		}
		if uid == a.euid && gid == a.egid && e.Mode&^0o777 == 0 && e.Mode&a.umask == 0 {
			create, chown, chmod = e.Mode, false, false
		}
	}
	fd, err := unix.Openat(dfd, base, flags, create)
	if err == unix.EEXIST {
		if err := a.clear(dfd, base, e.Path); err != nil {
			return err
		}
		fd, err = unix.Openat(dfd, base, flags, create)
	} else if err == nil {
		// A lower layer's entry of that name (overlay) is replaced.
		a.files.deleteTree(e.Path)
	}
	if err != nil {
		return &os.PathError{Op: "create", Path: e.Path, Err: err}
	}
	// A raw descriptor: os.File would register it with the poller and
	// cost a few syscalls per file, which adds up over many small files.
	closed := false
	defer func() {
		if !closed {
			unix.Close(fd)
		}
	}()
	var n int64
	if sd, ok := r.(*sparseData); ok {
		// Only the data regions are read and written: the holes of a
		// sparse entry cost nothing, however large.
		n, err = sd.writeTo(fd, a.buf, holeBlock(fd))
		if err == nil {
			err = unix.Ftruncate(fd, n)
		}
	} else if e.Size < holeMin {
		n, err = io.CopyBuffer(fsx.FdWriter(fd), r, a.buf)
	} else {
		// Large files keep their holes (sparse entries, runs of
		// zeros): the bytes read back are the same.
		n, err = writeHoley(fd, r, 0, a.buf, holeBlock(fd))
		if err == nil {
			err = unix.Ftruncate(fd, n)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", e.Path, err)
	}
	if n != e.Size {
		return fmt.Errorf("write %s: %d bytes of %d", e.Path, n, e.Size)
	}
	if n > 0 {
		if err := a.notePayload(dfd, base, e.Path); err != nil {
			return err
		}
	}
	// Owner, mode and times go through the open descriptor: no second
	// lookup of the name.
	if a.opts.Rootless {
		if !a.ownedAsCreated(dfd, e) {
			if err := a.owner(dfd, e.Path, base, e); err != nil {
				return err
			}
		}
	} else if chown {
		if err := a.chownFd(fd, e); err != nil {
			return err
		}
	}
	if chmod {
		if err := unix.Fchmod(fd, e.Mode); err != nil {
			return &os.PathError{Op: "chmod", Path: e.Path, Err: err}
		}
	}
	if err := a.xattrs(fd, -1, "", e); err != nil {
		return err
	}
	ts := unix.NsecToTimespec(e.Mtime)
	if err := fsx.Futimens(fd, &[2]unix.Timespec{ts, ts}); err != nil {
		return fmt.Errorf("%s: %w", e.Path, err)
	}
	closed = true
	if err := a.dropper.closeFile(fd, n); err != nil {
		return fmt.Errorf("write %s: %w", e.Path, err)
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return nil
}

// chownFd gives the open file fd e's owner, shifted to the host's IDs.
func (a *applier) chownFd(fd int, e *Entry) error {
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", e.Path, err)
	}
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return &os.PathError{Op: "chown", Path: e.Path, Err: err}
	}
	return nil
}

func (a *applier) directory(dfd int, base string, e *Entry) error {
	// Most directories are new: make it first and look at what holds
	// the name only when it is taken. As root, in a plain directory, a
	// mode the umask keeps (with owner rwx, so the layer can fill it) is
	// given at once and finish leaves it alone.
	create := uint32(0o700)
	if !a.opts.Rootless && dfd == a.last.fd && a.last.plain && len(e.Xattrs) == 0 &&
		e.Mode&^0o777 == 0 && e.Mode&0o700 == 0o700 && e.Mode&a.umask == 0 {
		create = e.Mode
	}
	existed := false
	err := unix.Mkdirat(dfd, base, create)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return &os.PathError{Op: "lstat", Path: e.Path, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			// An existing directory keeps its children; its metadata is
			// replaced.
			a.dirsChanged()
			existed = true
			if err := clearXattrs(dfd, base, a.opts.Whiteouts == WhiteoutConvert); err != nil {
				return fmt.Errorf("%s: %w", e.Path, err)
			}
		} else {
			if err := a.clear(dfd, base, e.Path); err != nil {
				return err
			}
			err = unix.Mkdirat(dfd, base, create)
		}
	}
	if err != nil && !existed {
		return &os.PathError{Op: "mkdir", Path: e.Path, Err: err}
	}
	if existed || !a.ownedAsCreated(dfd, e) {
		if err := a.owner(dfd, e.Path, base, e); err != nil {
			return err
		}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	if !existed && create == e.Mode {
		a.modeSet[e.Path] = true
	} else {
		delete(a.modeSet, e.Path)
	}
	if !existed && dfd == a.last.fd && a.last.plain && e.Xattrs["system.posix_acl_default"] == nil {
		// Made here with no set-gid bit (finish sets the mode) and
		// nothing to inherit: dirFor need not ask.
		a.plainDirs[e.Path] = true
	}
	a.files[e.Path] = e
	a.dirty[e.Path] = true
	a.touchParent(e.Path)
	return nil
}

func (a *applier) rootDir(e *Entry) error {
	a.dirsChanged()
	if err := a.owner(a.t.Fd(), ".", "", e); err != nil {
		return err
	}
	if err := a.xattrs(-1, a.t.Fd(), "", e); err != nil {
		return err
	}
	a.files["."] = e
	a.dirty["."] = true
	return nil
}

func (a *applier) symlink(dfd int, base string, e *Entry) error {
	// As for files: create first, clear the name only when it is taken.
	err := unix.Symlinkat(e.Link, dfd, base)
	if err == unix.EEXIST {
		if err := a.clear(dfd, base, e.Path); err != nil {
			return err
		}
		err = unix.Symlinkat(e.Link, dfd, base)
	} else if err == nil {
		a.files.deleteTree(e.Path)
	}
	if err != nil {
		return &os.PathError{Op: "symlink", Path: e.Path, Err: err}
	}
	if !a.ownedAsCreated(dfd, e) {
		if err := a.owner(dfd, e.Path, base, e); err != nil {
			return err
		}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return setTimes(dfd, base, e.Mtime)
}

func (a *applier) node(dfd int, base string, e *Entry) error {
	if err := a.clear(dfd, base, e.Path); err != nil {
		return err
	}
	if e.Type != TypeFifo && a.opts.Rootless {
		// An unprivileged user cannot make device nodes: an empty file
		// stands in, and the file list remembers what it stands for.
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return &os.PathError{Op: "create", Path: e.Path, Err: err}
		}
		unix.Close(fd)
		e.Placeholder = true
	} else {
		mode := e.Mode
		switch e.Type {
		case TypeChar:
			mode |= unix.S_IFCHR
		case TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		dev := unix.Mkdev(uint32(e.DevMajor), uint32(e.DevMinor))
		if err := unix.Mknodat(dfd, base, mode, int(dev)); err != nil {
			return &os.PathError{Op: "mknod", Path: e.Path, Err: err}
		}
	}
	if err := a.owner(dfd, e.Path, base, e); err != nil {
		return err
	}
	// The node was just made by this process: base is not a symlink.
	if err := unix.Fchmodat(dfd, base, e.Mode, 0); err != nil {
		return &os.PathError{Op: "chmod", Path: e.Path, Err: err}
	}
	if err := a.xattrs(-1, dfd, base, e); err != nil {
		return err
	}
	a.files[e.Path] = e
	a.touchParent(e.Path)
	return setTimes(dfd, base, e.Mtime)
}

func (a *applier) hardlink(dfd int, base, name, target string) error {
	tname, err := cleanName(target)
	if err != nil {
		return err
	}
	if tname == "." || tname == name {
		return fmt.Errorf("%w: hardlink %q to %q", ErrUnsafePath, name, target)
	}
	tdir, tbase := split(tname)
	tfd, err := a.t.Dir(tdir)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("hardlink target %s: %w", target, err)
	}
	var st unix.Stat_t
	if err == nil {
		defer unix.Close(tfd)
		err = unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %s is a directory", target)
	}
	if err := a.clear(dfd, base, name); err != nil {
		return err
	}
	e := &Entry{Path: name, Type: TypeReg, Link: tname}
	if te := a.files[tname]; te != nil {
		c := *te
		c.Path, c.Link = name, tname
		if te.Type == TypeSymlink {
			c.Link = te.Link
		}
		e = &c
	}
	if err == nil {
		if err := unix.Linkat(tfd, tbase, dfd, base, 0); err != nil {
			return &os.PathError{Op: "link", Path: name, Err: err}
		}
	} else {
		// The target is in a lower layer this directory does not hold
		// (overlay). Layers cannot link across each other, so copy the
		// target up to its own path in this layer and link the new name
		// to that copy: through the mount both names stay one file, as
		// they are in the image.
		te := a.files[tname]
		if te == nil || te.Type != TypeReg {
			return fmt.Errorf("hardlink target %s: %w (in no layer below)", target, os.ErrNotExist)
		}
		tdfd, err := a.parent(tdir)
		if err != nil {
			return fmt.Errorf("hardlink target %s: %w", target, err)
		}
		defer unix.Close(tdfd)
		tcopy := *te
		if err := a.copyUp(tdfd, tbase, tname, &tcopy); err != nil {
			return fmt.Errorf("hardlink target %s: %w", target, err)
		}
		if err := unix.Linkat(tdfd, tbase, dfd, base, 0); err != nil {
			return &os.PathError{Op: "link", Path: name, Err: err}
		}
	}
	a.files[name] = e
	a.touchParent(name)
	return nil
}

// copyUp copies the regular file name of the first lower layer holding it
// to base in dfd, with e's metadata.
func (a *applier) copyUp(dfd int, base, name string, e *Entry) error {
	for _, low := range a.opts.Lower {
		lt, err := fsx.OpenTree(low)
		if err != nil {
			return err
		}
		sfd, err := lt.Open(name, unix.O_RDONLY|unix.O_NOFOLLOW, 0)
		lt.Close()
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return err
		}
		src := os.NewFile(uintptr(sfd), name)
		fd, err := unix.Openat(dfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			src.Close()
			return &os.PathError{Op: "create", Path: e.Path, Err: err}
		}
		dst := os.NewFile(uintptr(fd), e.Path)
		// The copy keeps the lower file's holes.
		err = copyHoley(fd, sfd, a.buf)
		src.Close()
		if err == nil {
			err = a.owner(dfd, e.Path, base, e)
		}
		if err == nil {
			err = unix.Fchmod(fd, e.Mode)
		}
		if err == nil {
			err = a.xattrs(fd, -1, "", e)
		}
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return setTimes(dfd, base, e.Mtime)
	}
	return fmt.Errorf("%w (in no layer below)", os.ErrNotExist)
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
	if a.written[name] {
		// Whiteouts hide lower layers, not this one.
		return nil
	}
	if a.upper[name] {
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
		a.dirty[dir] = true
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
		if !a.written[p] && !a.upper[p] {
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
			if !a.written[p] && !a.upper[p] {
				delete(a.files, p)
			}
		}
	}
}

// touchParent notes that the directory holding name changed, so its
// mtime is put back at the end.
func (a *applier) touchParent(name string) {
	dir, _ := split(name)
	a.dirty[dir] = true
}

// owner applies e's ownership to base in dfd (dfd -1: to name through
// the root), or with Rootless records it in RootlessXattr.
func (a *applier) owner(dfd int, name, base string, e *Entry) error {
	if dfd < 0 {
		// Only directories come this way: the root and implicit parents.
		fd, err := a.t.Open(name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return a.ownerFd(fd, "", name, e)
	}
	return a.ownerFd(dfd, base, name, e)
}

func (a *applier) ownerFd(dfd int, base, name string, e *Entry) error {
	if a.opts.Rootless {
		uid, gid := e.UID, e.GID
		if m := a.opts.Owners; m != nil {
			// The IDs the namespace maps are given; the others are
			// what it gives root, and the xattr keeps them.
			u, okU := lookup(m.UIDs, e.UID)
			g, okG := lookup(m.GIDs, e.GID)
			if !okU {
				u, okU = lookup(m.UIDs, 0)
				if !okU {
					u = -1
				}
			} else {
				uid = 0
			}
			if !okG {
				g, okG = lookup(m.GIDs, 0)
				if !okG {
					g = -1
				}
			} else {
				gid = 0
			}
			flags := unix.AT_SYMLINK_NOFOLLOW
			if base == "" {
				flags |= unix.AT_EMPTY_PATH
			}
			if err := unix.Fchownat(dfd, base, u, g, flags); err != nil {
				return &os.PathError{Op: "chown", Path: name, Err: err}
			}
		}
		if e.Type == TypeSymlink {
			return nil // no user.* xattrs on symlinks
		}
		v := EncodeRootless(uid, gid)
		var err error
		switch {
		case base == "" && v == nil:
			// dfd is a directory: following its magic link reaches it.
			err = unix.Removexattr(fsx.FdPath(dfd), RootlessXattr)
		case base == "":
			err = unix.Setxattr(fsx.FdPath(dfd), RootlessXattr, v, 0)
		case v == nil:
			err = unix.Lremovexattr(fsx.ProcPath(dfd, base), RootlessXattr)
		default:
			err = unix.Lsetxattr(fsx.ProcPath(dfd, base), RootlessXattr, v, 0)
		}
		if err == unix.ENODATA {
			err = nil
		}
		if err == unix.EPERM && e.Type != TypeDir && e.Type != TypeReg && !e.Placeholder {
			// The kernel allows user.* xattrs only on files and
			// directories: the file list keeps a fifo's owner.
			err = nil
		}
		if err != nil && err != unix.ENOTSUP {
			return &os.PathError{Op: "set owner xattr", Path: name, Err: err}
		}
		return nil
	}
	uid, gid, err := a.opts.IDMap.ToHost(e.UID, e.GID)
	if err != nil {
		return fmt.Errorf("owner of %s: %w", name, err)
	}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dfd, base, uid, gid, flags); err != nil {
		return &os.PathError{Op: "chown", Path: name, Err: err}
	}
	return nil
}

// xattrs sets e's extended attributes on the open file fd, or on base in
// dfd (base "": dfd itself).
func (a *applier) xattrs(fd, dfd int, base string, e *Entry) error {
	for _, k := range sortedKeys(e.Xattrs) {
		if k == RootlessXattr && a.opts.Rootless {
			continue
		}
		name := k
		if a.opts.XattrName != nil {
			name = a.opts.XattrName(k)
		}
		var err error
		switch {
		case fd >= 0:
			err = unix.Fsetxattr(fd, name, e.Xattrs[k], 0)
		case base == "":
			// dfd is a directory (the root): its magic link reaches it.
			err = unix.Setxattr(fsx.FdPath(dfd), name, e.Xattrs[k], 0)
		default:
			err = unix.Lsetxattr(fsx.ProcPath(dfd, base), name, e.Xattrs[k], 0)
		}
		if err == nil {
			continue
		}
		// Unprivileged users cannot set security.* or trusted.*, nor
		// user.* on symlinks and devices: the file list keeps them.
		if a.opts.Rootless && (err == unix.EPERM || err == unix.EACCES || err == unix.ENOTSUP) {
			continue
		}
		return &os.PathError{Op: "setxattr " + k, Path: e.Path, Err: err}
	}
	return nil
}

func clearXattrs(dfd int, base string, keepOpaque bool) error {
	p := fsx.ProcPath(dfd, base)
	names, err := fsx.ListXattrs(p)
	if err != nil {
		return err
	}
	for _, n := range names {
		// A directory listed again after its opaque marker (the marker
		// may come anywhere in the layer) stays opaque.
		if keepOpaque && (n == "trusted.overlay.opaque" || n == "user.overlay.opaque") {
			continue
		}
		if err := unix.Lremovexattr(p, n); err != nil && err != unix.ENODATA && err != unix.EPERM {
			return fmt.Errorf("remove xattr %s: %w", n, err)
		}
	}
	return nil
}

func setTimes(dfd int, base string, mtime int64) error {
	ts := unix.NsecToTimespec(mtime)
	if err := unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "chtimes", Path: base, Err: err}
	}
	return nil
}

// finish sets the mode and mtime of every directory the layer created or
// changed, deepest first, so that neither a child's creation nor a
// read-only parent gets in the way.
func (a *applier) finish() error {
	dirs := make([]string, 0, len(a.dirty))
	for p := range a.dirty {
		dirs = append(dirs, p)
	}
	sortByDepth(dirs, true)
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
		if !a.modeSet[p] {
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

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// rootlessNoopID in a RootlessXattr field means "the file's real owner",
// which in a rootless container is its root: umoci writes it for the 0 half
// of an owner like 0:42, and strata writes the same bytes.
const rootlessNoopID = 1<<32 - 1

// EncodeRootless encodes an owner as the rootless-containers protobuf
// message Resource{uint32 uid = 1; uint32 gid = 2}. 0:0 is no xattr at
// all and a 0 beside a non-zero id is rootlessNoopID, byte for byte as
// umoci writes them.
func EncodeRootless(uid, gid int) []byte {
	if uid == 0 && gid == 0 {
		return nil
	}
	if uid == 0 {
		uid = rootlessNoopID
	}
	if gid == 0 {
		gid = rootlessNoopID
	}
	b := append([]byte{0x08}, appendVarint(nil, uint64(uint32(uid)))...)
	b = append(b, 0x10)
	return appendVarint(b, uint64(uint32(gid)))
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// DecodeRootless reads a RootlessXattr value; unknown fields are skipped
// as protobuf requires.
func DecodeRootless(b []byte) (uid, gid int, err error) {
	for len(b) > 0 {
		key, n := readVarint(b)
		if n <= 0 {
			return 0, 0, errors.New("rootless xattr: bad field key")
		}
		b = b[n:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			v, n := readVarint(b)
			if n <= 0 {
				return 0, 0, errors.New("rootless xattr: bad varint")
			}
			b = b[n:]
			switch {
			case field == 1 && uint32(v) != rootlessNoopID:
				uid = int(uint32(v))
			case field == 2 && uint32(v) != rootlessNoopID:
				gid = int(uint32(v))
			}
		case 2:
			l, n := readVarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return 0, 0, errors.New("rootless xattr: bad length")
			}
			b = b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return 0, 0, errors.New("rootless xattr: truncated")
			}
			b = b[4:]
		case 1:
			if len(b) < 8 {
				return 0, 0, errors.New("rootless xattr: truncated")
			}
			b = b[8:]
		default:
			return 0, 0, fmt.Errorf("rootless xattr: wire type %d", wire)
		}
	}
	return uid, gid, nil
}

func readVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// sortByDepth orders cleaned relative paths ("." the root) by depth,
// parents first or, with deepestFirst, children first; paths of one depth
// by name.
func sortByDepth(paths []string, deepestFirst bool) {
	depth := func(p string) int {
		if p == "." {
			return -1
		}
		return strings.Count(p, "/")
	}
	sort.Slice(paths, func(i, j int) bool {
		di, dj := depth(paths[i]), depth(paths[j])
		if di != dj {
			return (di > dj) == deepestFirst
		}
		return paths[i] < paths[j]
	})
}
