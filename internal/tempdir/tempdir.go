// Package tempdir makes private working directories that a killed process
// does not leave behind for ever: each holds a lock for as long as its
// owner lives, and making a new one removes the siblings nobody holds.
package tempdir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
	p, err := os.MkdirTemp(base, prefix)
	if err != nil {
		return nil, fmt.Errorf("create working directory in %s: %w", base, err)
	}
	f, err := os.OpenFile(filepath.Join(p, lockName), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		os.RemoveAll(p)
		return nil, fmt.Errorf("lock working directory %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.RemoveAll(p)
		return nil, fmt.Errorf("lock working directory %s: %w", p, err)
	}
	return &Dir{Path: p, lock: f}, nil
}

// Remove deletes the directory and releases its lock.
func (d *Dir) Remove() error {
	err := os.RemoveAll(d.Path)
	d.lock.Close()
	return err
}

// sweep removes prefix* directories of base whose lock is free. A
// directory without a lock file yet may be one being made right now, so it
// is left alone.
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
		f, err := os.OpenFile(filepath.Join(p, lockName), os.O_RDWR|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}
