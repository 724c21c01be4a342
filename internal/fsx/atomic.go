package fsx

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AtomicFile is a file written under a temporary name of its own in the
// directory of its path (".NAME.tmp-RANDOM", so two writers never share
// one) and put at its path by a rename: readers see the old file or the
// whole new one. Exactly one of Commit, Rename or Discard ends it.
type AtomicFile struct {
	*os.File
	path string
}

// CreateAtomic starts writing the file path with permissions mode (not
// masked by the umask).
func CreateAtomic(path string, mode os.FileMode) (*AtomicFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	for range 16 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		tmp := filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Chmod(mode); err != nil {
			f.Close()
			os.Remove(tmp)
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return &AtomicFile{File: f, path: path}, nil
	}
	return nil, fmt.Errorf("write %s: no free temporary name", path)
}

// Commit syncs the file and renames it into place. The directory is not
// synced: callers for which the rename must survive a crash call SyncDir.
func (f *AtomicFile) Commit() error {
	if err := f.Sync(); err != nil {
		f.Discard()
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return f.Rename()
}

// Rename puts the file in place without syncing it, for a caller that
// syncs it later (before anything depends on it being on disk).
func (f *AtomicFile) Rename() error {
	tmp := f.Name()
	err := f.Close()
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	return nil
}

// Discard abandons the file.
func (f *AtomicFile) Discard() {
	f.Close()
	os.Remove(f.Name())
}

// WriteFile replaces path with b: a temporary file, fsync, rename (see
// AtomicFile). The directory is not synced.
func WriteFile(path string, b []byte, mode os.FileMode) error {
	f, err := CreateAtomic(path, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Discard()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}
