package vfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// copyOptions say how copyTree treats what it copies.
type copyOptions struct {
	// rootless: ownership is left to the user.rootlesscontainers xattr
	// (copied with the other xattrs), unreadable sources are lent owner
	// permissions for the time of the copy.
	rootless bool
	// keepOwners, with rootless, copies owners too: in a user namespace
	// the owners a snapshot holds are ones it maps.
	keepOwners bool
	// uid and gid are the owner a file this process creates gets: a copy
	// that needs no other is not chowned.
	uid, gid int
	// writableDirs gives every copied directory owner rwx, for a layer to
	// be applied on the copy; Apply puts the image's modes back.
	writableDirs bool
	// idMap shifts owners from the image's IDs to the host's.
	idMap *ids.Map
	// linkFiles hardlinks every non-directory instead of copying it. Only
	// for snapshot to snapshot: Apply never changes a file in place (it
	// replaces it), so snapshots can share inodes; a rootfs, which a
	// container writes to, always gets copies.
	linkFiles bool
}

// copyTree copies the tree src (a snapshot: trusted, made by strata) to
// dst, which must not exist: file types, modes, owners, xattrs, hardlinks
// and times. File contents are cloned (FICLONE) where the file system
// allows, else copied with copy_file_range, on every core. A cancelled
// ctx stops it at the next directory.
func copyTree(ctx context.Context, src, dst string, o copyOptions) error {
	n := runtime.GOMAXPROCS(0)
	// Up to n goroutines copy subdirectories beside the walk: a tree of
	// hard links (a vfs layer's copy of its parent) is all directory
	// work, which the file workers do not share.
	c := &copier{ctx: ctx, o: o, walk: fsx.NewWalk(n), inodes: map[inodeKey]*firstLink{}}
	c.idle = sync.NewCond(&c.mu)
	c.learnCreator(filepath.Dir(dst))
	c.work = make(chan copyJob, 64)
	for range n {
		c.wg.Add(1)
		go c.worker()
	}
	err := c.copy(src, dst)
	close(c.work)
	c.wg.Wait()
	if err == nil {
		err = c.walk.Err()
	}
	if err != nil {
		return err
	}
	// Directory modes and times last, children before parents.
	for _, d := range c.dirs {
		if err := unix.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("copy %s: chmod: %w", d.path, err)
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, d.path, d.times[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("copy %s: chtimes: %w", d.path, err)
		}
	}
	return nil
}

type inodeKey struct{ dev, ino uint64 }

type dirDone struct {
	path  string
	mode  uint32
	times [2]unix.Timespec
}

type copyJob struct {
	src, dst string
	st       unix.Stat_t
	first    *firstLink // set when other names link to this file
}

// firstLink is the copy of a file with several names; done is closed
// when it is complete, so that the other names can be linked to it.
type firstLink struct {
	path string
	done chan struct{}
}

type copier struct {
	ctx  context.Context
	o    copyOptions
	work chan copyJob
	wg   sync.WaitGroup
	// walk spreads subdirectories over goroutines and keeps the copy's
	// first error, the file workers' too.
	walk *fsx.Walk

	mu     sync.Mutex // guards what follows
	inodes map[inodeKey]*firstLink
	dirs   []dirDone
	queued int        // file copies queued and not finished
	idle   *sync.Cond // signalled when queued drops to 0

	noClone atomic.Bool

	// What a file this process creates gets without asking: owner
	// o.uid:o.gid when ownerKnown, permissions masked by umask.
	ownerKnown bool
	umask      uint32
}

// learnCreator finds out what permissions a new file gets and whether it
// gets the process's owner, so that copies skip a chown or chmod that
// would change nothing. A set-gid parent hands its group down: then the
// owner is not known.
func (c *copier) learnCreator(parent string) {
	c.umask = 0o777
	if m, ok := fsx.Umask(); ok {
		c.umask = m
	}
	var st unix.Stat_t
	if unix.Stat(parent, &st) != nil || st.Mode&unix.S_ISGID != 0 {
		return
	}
	c.ownerKnown = true
}

// waitQueued waits until every file copy queued so far is done.
func (c *copier) waitQueued() {
	c.mu.Lock()
	for c.queued > 0 {
		c.idle.Wait()
	}
	c.mu.Unlock()
}

func (c *copier) worker() {
	defer c.wg.Done()
	for j := range c.work {
		if c.walk.Err() == nil {
			c.walk.Fail(c.copyFile(j.src, j.dst, &j.st))
		}
		if j.first != nil {
			close(j.first.done)
		}
		c.mu.Lock()
		if c.queued--; c.queued == 0 {
			c.idle.Broadcast()
		}
		c.mu.Unlock()
	}
}

// lend gives the owner the permission bits perm on p for the duration of
// fn when p's mode lacks them (rootless copies of 0000 files).
func (c *copier) lend(p string, st *unix.Stat_t, perm uint32, fn func() error) error {
	if !c.o.rootless || st.Mode&perm == perm {
		return fn()
	}
	if err := unix.Chmod(p, (st.Mode&0o7777)|perm); err != nil {
		return fn()
	}
	defer unix.Chmod(p, st.Mode&0o7777)
	return fn()
}

// copy copies src, of any type, to dst.
func (c *copier) copy(src, dst string) error {
	if err := c.walk.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return c.copyDir(src, dst, &st)
	}
	if c.o.linkFiles && c.o.idMap.Empty() {
		err := os.Link(src, dst)
		if err == nil {
			return nil
		}
		if !linkRefused(err) {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return c.queueFile(src, dst, &st)
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if err := os.Symlink(target, dst); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		return c.metaTimes(src, dst, &st)
	default:
		if err := unix.Mknod(dst, st.Mode, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
		return c.metaTimes(src, dst, &st)
	}
}

// linkRefused says whether a hardlink failed for a reason a copy gets
// around: another file system, the link limit, a file the user may not
// link.
func linkRefused(err error) bool {
	return errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EMLINK) || errors.Is(err, unix.EPERM)
}

// copyDir makes the directory dst from src (of stat st) and copies what
// it holds; its mode and times are set once the whole tree is copied.
func (c *copier) copyDir(src, dst string, st *unix.Stat_t) error {
	if err := c.ctx.Err(); err != nil {
		return err
	}
	if err := unix.Mkdir(dst, 0o700); err != nil {
		return &os.PathError{Op: "mkdir", Path: dst, Err: err}
	}
	if err := c.meta(src, dst, st); err != nil {
		return err
	}
	// Reading the directory and reaching its children needs owner read
	// and search rights for as long as the children are copied.
	err := c.lend(src, st, 0o500, func() error { return c.copyEntries(src, dst, st) })
	if err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	if c.o.writableDirs {
		mode |= 0o700
	}
	c.mu.Lock()
	c.dirs = append(c.dirs, dirDone{dst, mode, [2]unix.Timespec{st.Atim, st.Mtim}})
	c.mu.Unlock()
	return nil
}

// copyEntries copies what the directory src holds into dst.
func (c *copier) copyEntries(src, dst string, st *unix.Stat_t) error {
	// A raw descriptor and getdents: os.File would register the
	// directory with the poller and switch it to blocking mode, system
	// calls that add up over thousands of directories.
	fd, err := unix.Open(src, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "copy", Path: src, Err: err}
	}
	defer unix.Close(fd)
	ents, err := fsx.ReadDirents(fd)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Regular files to be linked need no stat and no path walk: the
	// entry's type is enough, and linkat works between the two
	// directories' descriptors.
	dfd := -1
	if c.o.linkFiles && c.o.idMap.Empty() {
		if dfd, err = unix.Open(dst, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0); err != nil {
			return &os.PathError{Op: "open", Path: dst, Err: err}
		}
		defer unix.Close(dfd)
	}
	// Subdirectories go to another goroutine while one is free; all are
	// done before this directory's rights are taken back and its
	// metadata is queued.
	g := c.walk.Group()
	defer g.Wait()
	for _, e := range ents {
		n := e.Name
		if dfd >= 0 && e.Type == unix.DT_REG {
			err := unix.Linkat(fd, n, dfd, n, 0)
			if err == nil {
				continue
			}
			if !linkRefused(err) {
				return fmt.Errorf("copy %s: link: %w", filepath.Join(src, n), err)
			}
		}
		s, d := filepath.Join(src, n), filepath.Join(dst, n)
		if e.Type == unix.DT_DIR {
			err = g.Go(func() error { return c.copy(s, d) })
		} else {
			err = c.copy(s, d)
		}
		if err != nil {
			return err
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	// Workers may still be reading children: wait before the
	// permissions are taken back.
	if st.Mode&0o500 != 0o500 {
		c.waitQueued()
	}
	return nil
}

// queueFile hands the regular file src to the workers, or links dst to
// the copy of another name of its inode.
func (c *copier) queueFile(src, dst string, st *unix.Stat_t) error {
	var first *firstLink
	c.mu.Lock()
	if st.Nlink > 1 {
		k := inodeKey{st.Dev, st.Ino}
		if f, ok := c.inodes[k]; ok {
			c.mu.Unlock()
			// The first name's copy may still be running.
			<-f.done
			if err := c.walk.Err(); err != nil {
				return err
			}
			if err := os.Link(f.path, dst); err != nil {
				return fmt.Errorf("copy %s: %w", src, err)
			}
			return nil
		}
		first = &firstLink{path: dst, done: make(chan struct{})}
		c.inodes[k] = first
	}
	c.queued++
	c.mu.Unlock()
	c.work <- copyJob{src, dst, *st, first}
	return nil
}

func (c *copier) copyFile(src, dst string, st *unix.Stat_t) error {
	return c.lend(src, st, 0o400, func() error {
		// Raw descriptors: os.File would try to register each with the
		// poller, syscalls that add up over many small files. Everything
		// after the opens goes through the descriptors, not paths.
		in, err := unix.Open(src, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return &os.PathError{Op: "copy", Path: src, Err: err}
		}
		defer unix.Close(in)
		mode := st.Mode & 0o7777
		// Created with its final permissions when the umask keeps them
		// and the owner stays ours (a chown would clear set-id bits).
		create := mode & 0o777
		chown, err := c.needChown(st)
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		fix := fileFix{chown: chown, chmod: chown || mode != create || create&c.umask != 0}
		if c.o.rootless && mode&0o600 != 0o600 {
			// Our own copy must stay writable for its data and xattrs.
			fix.chmod = true
		}
		if fix.chmod {
			create = 0o600
		}
		out, err := unix.Open(dst, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, create)
		if err != nil {
			return &os.PathError{Op: "copy", Path: dst, Err: err}
		}
		err = c.fileBody(out, in, st, fix)
		if cerr := unix.Close(out); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		return nil
	})
}

// fileFix says what a copied file needs after its creation.
type fileFix struct{ chown, chmod bool }

// fileBody fills the new file out from in: data, owner, xattrs, mode and
// times, in that order (a chown clears set-id bits, writes move mtime).
func (c *copier) fileBody(out, in int, st *unix.Stat_t, fix fileFix) error {
	if err := c.copyData(out, in, st); err != nil {
		return err
	}
	if fix.chown {
		uid, gid, err := c.o.idMap.ToHost(int(st.Uid), int(st.Gid))
		if err != nil {
			return err
		}
		if err := unix.Fchown(out, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := fsx.CopyXattrsFd(out, in, c.skipXattr); err != nil {
		return err
	}
	if fix.chmod {
		if err := unix.Fchmod(out, st.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	return fsx.Futimens(out, &[2]unix.Timespec{st.Atim, st.Mtim})
}

// needChown says whether a copy made by this process needs a chown to get
// the owner of the source st: not in rootless copies (the owner lives in
// an xattr), nor when the host owner is who creates the file.
func (c *copier) needChown(st *unix.Stat_t) (bool, error) {
	if c.o.rootless && !c.o.keepOwners {
		return false, nil
	}
	uid, gid, err := c.o.idMap.ToHost(int(st.Uid), int(st.Gid))
	if err != nil {
		return false, err
	}
	return !c.ownerKnown || uid != c.o.uid || gid != c.o.gid, nil
}

// skipXattr says whether a copy goes on without an xattr its
// destination refused with err: a rootless copy cannot set trusted.* or
// security.*, nor user.* on every file type.
func (c *copier) skipXattr(err error) bool {
	return c.o.rootless && (err == unix.EPERM || err == unix.ENOTSUP || err == unix.EACCES)
}

// copyData clones in into out, or copies it in the kernel, or streams it.
// A file system that cannot clone is not asked again. A file with fewer
// blocks than its size has holes: only its data extents are copied, and
// the holes stay holes.
func (c *copier) copyData(out, in int, st *unix.Stat_t) error {
	size := st.Size
	if size == 0 {
		return nil
	}
	if !c.noClone.Load() {
		err := unix.IoctlFileClone(out, in)
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) {
			c.noClone.Store(true)
		}
	}
	if st.Blocks*512 >= size {
		return copyRange(out, in, 0, size)
	}
	for off := int64(0); off < size; {
		start, err := unix.Seek(in, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole is left
		}
		end := size
		if err != nil {
			start = off // no SEEK_DATA: the rest is data
		} else if e, err := unix.Seek(in, start, unix.SEEK_HOLE); err == nil {
			end = min(e, size)
		}
		if start >= end {
			break
		}
		if err := copyRange(out, in, start, end); err != nil {
			return err
		}
		off = end
	}
	if err := unix.Ftruncate(out, size); err != nil {
		return fmt.Errorf("truncate to %d: %w", size, err)
	}
	return nil
}

// copyRange copies bytes [start, end) of in to the same offsets of out
// with copy_file_range; where the kernel cannot, it reads and writes.
func copyRange(out, in int, start, end int64) error {
	roff, woff := start, start
	for roff < end {
		n, err := unix.CopyFileRange(in, &roff, out, &woff, int(min(end-roff, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			if roff == start && (errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP)) {
				return preadCopy(out, in, start, end)
			}
			if err == nil {
				return fmt.Errorf("source shrank: %d of %d bytes", roff, end)
			}
			return err
		}
	}
	return nil
}

// preadCopy copies bytes [start, end) of in to out at the same offsets.
func preadCopy(out, in int, start, end int64) error {
	buf := make([]byte, min(end-start, 128<<10))
	for off := start; off < end; {
		n, err := unix.Pread(in, buf[:min(int64(len(buf)), end-off)], off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("source shrank: %d of %d bytes", off, end)
		}
		if err := fsx.PwriteAll(out, buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// meta copies owner and xattrs.
func (c *copier) meta(src, dst string, st *unix.Stat_t) error {
	chown, err := c.needChown(st)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if chown {
		uid, gid, err := c.o.idMap.ToHost(int(st.Uid), int(st.Gid))
		if err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
		if err := unix.Lchown(dst, uid, gid); err != nil {
			return &os.PathError{Op: "lchown", Path: dst, Err: err}
		}
	}
	if err := fsx.CopyXattrs(src, dst, c.skipXattr); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// metaTimes copies owner, xattrs and times: links and nodes, which are
// complete once made (a directory's times are set after its children).
func (c *copier) metaTimes(src, dst string, st *unix.Stat_t) error {
	if err := c.meta(src, dst, st); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "chtimes", Path: dst, Err: err}
	}
	return nil
}
