// Package tempdir makes private working directories that a killed process
// does not leave behind for ever: each is locked (flock on the directory
// itself) for as long as its owner lives, and making a new one removes the
// siblings nobody holds.
package tempdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is a private working directory.
type Dir struct {
	Path string
	lock *os.File // the directory, open and flocked
}

// Make creates a directory named prefix* in base (the system's temporary
// directory when base is empty) and locks it. It first removes the
// directories named prefix* in base whose owners died.
//
// The lock is the directory itself, so there is no moment at which it
// exists unlockable: a directory whose maker was killed before locking it
// is free, and swept like any other. A concurrent sweep may take the lock
// between the directory's creation and Make's: Make then waits, and makes
// another directory if the sweep removed this one.
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
		f, err := openDir(p)
		if err == nil {
			if err = flock(f, unix.LOCK_EX); err == nil && linked(f, p) {
				return &Dir{Path: p, lock: f}, nil
			}
			f.Close()
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			os.RemoveAll(p)
			return nil, fmt.Errorf("lock working directory %s: %w", p, err)
		}
		if attempt >= 8 {
			return nil, fmt.Errorf("lock working directory %s: removed by a concurrent sweep %d times", p, attempt+1)
		}
	}
}

// Remove deletes the directory and releases its lock.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.lock.Close()
	return err
}

func openDir(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
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

// Sweep removes the directories named prefix* in base whose owners died
// (nobody holds their lock) and returns how many it removed.
func Sweep(base, prefix string) int { return SweepFunc(base, prefix, nil) }

// SweepFunc is Sweep calling clean (when not nil) on each dead directory,
// its lock held, before removing it: for what a removal cannot take
// away, such as mounts its owner left.
func SweepFunc(base, prefix string, clean func(dir string)) int {
	ents, err := os.ReadDir(base)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), prefix) && removeIfDead(filepath.Join(base, e.Name()), clean) {
			n++
		}
	}
	return n
}

func sweep(base, prefix string) { Sweep(base, prefix) }

// removeIfDead removes the working directory p if nobody holds its lock.
func removeIfDead(p string, clean func(string)) bool {
	f, err := openDir(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return false
	}
	if clean != nil {
		clean(p)
	}
	return os.RemoveAll(p) == nil
}
