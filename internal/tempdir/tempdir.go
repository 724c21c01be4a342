// Package tempdir makes private working directories that a killed process
// does not leave behind for ever: each holds a lock for as long as its
// owner lives, and making a new one removes the siblings nobody holds.
package tempdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const lockName = ".lock"

// Dir is a private working directory.
type Dir struct {
	Path string
	lock *os.File
}

// Make creates a directory named prefix* in base (the system's temporary
// directory when base is empty) and locks it. It first removes the
// directories named prefix* in base whose owners died.
func Make(base, prefix string) (*Dir, error) {
	if base == "" {
		base = os.TempDir()
	}
	sweep(base, prefix)
	for attempt := 0; ; attempt++ {
		p, err := os.MkdirTemp(base, prefix)
		if err != nil {
			return nil, fmt.Errorf("create working directory in %s: %w", base, err)
		}
		lock := filepath.Join(p, lockName)
		f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			os.RemoveAll(p)
			if errors.Is(err, fs.ErrNotExist) && attempt < 8 {
				continue // swept before its lock file was there
			}
			return nil, fmt.Errorf("lock working directory %s: %w", p, err)
		}
		// Between the lock file's creation and this lock, another Make's
		// sweep may have taken the lock (it then waits here for a moment)
		// and removed the directory (then start over).
		if err := flock(f, unix.LOCK_EX); err != nil {
			f.Close()
			os.RemoveAll(p)
			return nil, fmt.Errorf("lock working directory %s: %w", p, err)
		}
		if linked(f, lock) {
			return &Dir{Path: p, lock: f}, nil
		}
		f.Close()
		if attempt >= 8 {
			return nil, fmt.Errorf("lock working directory %s: removed by a concurrent sweep %d times", p, attempt+1)
		}
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// linked reports whether path still names the open file f.
func linked(f *os.File, path string) bool {
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	pi, err := os.Lstat(path)
	return err == nil && os.SameFile(fi, pi)
}

// Remove deletes the directory and releases its lock.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.lock.Close()
	return err
}

// noLockGrace is how long a directory may lack its lock file before a
// sweep takes it for what a process killed between the directory's
// creation and its lock file's left: Make makes both at once.
const noLockGrace = time.Minute

// SweepAll removes the working directories in base, whatever their
// prefix, whose owners died: those holding a lock file nobody holds.
// Other directories are left alone. It returns how many it removed.
func SweepAll(base string) int {
	ents, err := os.ReadDir(base)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() && removeIfDead(filepath.Join(base, e.Name())) {
			n++
		}
	}
	return n
}

// removeIfDead removes the working directory p if it holds a lock file
// nobody holds.
func removeIfDead(p string) bool {
	f, err := os.OpenFile(filepath.Join(p, lockName), os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && os.RemoveAll(p) == nil
}

// sweep removes prefix* directories of base whose lock is free. A
// directory without a lock file may be one being made right now, so it is
// left alone unless it is older than noLockGrace.
func sweep(base, prefix string) {
	ents, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p := filepath.Join(base, e.Name())
		if _, err := os.Lstat(filepath.Join(p, lockName)); errors.Is(err, fs.ErrNotExist) {
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > noLockGrace {
				os.RemoveAll(p)
			}
			continue
		}
		removeIfDead(p)
	}
}
