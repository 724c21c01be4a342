package layout

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// newRecord, in StateDir, says which process made the layout. It is
// written by Init before the oci-layout marker and removed by the first
// other process that holds the layout (claim): while it is there with
// the creator's token, nobody but the creator has written to the layout.
const newRecord = "new"

// procToken names this process in newRecord: the pid alone could be
// reused by a later process.
var procToken = func() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return strconv.Itoa(os.Getpid()) + " " + hex.EncodeToString(b[:])
}()

// claim removes another process's newRecord, so that its creator no
// longer takes the layout back. The caller holds gc.lock (shared or
// exclusive), so a creator's Undo, which needs it exclusively, cannot run
// between claim and the caller's writes.
func (l *Layout) claim() error {
	p := filepath.Join(l.dir, StateDir, newRecord)
	b, err := os.ReadFile(p)
	if err != nil || string(b) == procToken {
		return nil
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("layout %s: %w", l.dir, err)
	}
	return nil
}

// unclaimed reports whether newRecord is still this process's.
func (l *Layout) unclaimed() bool {
	b, err := os.ReadFile(filepath.Join(l.dir, StateDir, newRecord))
	return err == nil && string(b) == procToken
}

// Undone says what Undo took back.
type Undone struct {
	// Created: this Layout's Init made the layout.
	Created bool
	// Removed: the layout is gone (and its directory, when Init made it).
	Removed bool
	// Blobs is how many blobs this Layout had written and removed.
	Blobs int
	// Kept is how many blobs this Layout wrote that stay: index.json
	// reaches them, or another writer held the layout.
	Kept int
	// Busy: another process held the layout for writing, so nothing
	// was taken back; gc removes the blobs no image uses.
	Busy bool
}

// AsItWas reports whether the layout is as it was before this Layout
// wrote to it: absent, if it did not exist, else without a blob it
// wrote. (Other processes' changes meanwhile are theirs.)
func (u Undone) AsItWas() bool { return u.Removed || (!u.Created && u.Kept == 0) }

// Undo takes back what this Layout wrote, for a command that failed. It
// acts only while no other process holds the layout for writing (another
// writer may be about to name a blob it found here):
//
//   - a layout Init made is removed whole (its directory too when Init
//     made that) if no other process has held it since (see claim) and
//     index.json names nothing;
//   - otherwise the blobs this Layout wrote that index.json does not
//     reach are removed, as Discard does.
//
// When another writer holds the layout nothing is removed and gc collects
// the blobs later. What this process named in index.json stays. Undo
// leaves the Layout closed.
func (l *Layout) Undo() (Undone, error) {
	defer l.Close()
	written := l.written.take()
	if !l.created && len(written) == 0 {
		return Undone{}, nil
	}
	if err := l.Hold(); err != nil {
		return Undone{Created: l.created, Kept: len(written)}, err
	}
	l.mu.Lock()
	lock := l.gcLock
	l.mu.Unlock()
	// Converting a shared flock to exclusive drops it first; when the
	// conversion fails the shared hold has to be taken again.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return Undone{Created: l.created, Kept: len(written), Busy: true}, nil
	}
	if l.created && l.unclaimed() {
		removed, err := l.removeCreated()
		if removed {
			l.created = false // nothing left to take back
		}
		if removed || err != nil {
			return Undone{Created: true, Removed: removed, Blobs: len(written)}, err
		}
	}
	n, err := l.discardHeld(written)
	return Undone{Created: l.created, Blobs: n, Kept: len(written) - n}, err
}

// removeCreated removes the layout Init made, if index.json names
// nothing. The caller holds gc.lock exclusively and nobody else has held
// it since Init: everything in the layout is this process's. The lock
// files go last, unlinked while held, so that a process waiting for one
// finds out (lockFile) that the layout is gone.
func (l *Layout) removeCreated() (bool, error) {
	ilock, err := l.lockFile(indexLock, unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer ilock.Close()
	idx, err := l.Index()
	if err != nil || len(idx.Manifests) > 0 {
		return false, nil
	}
	// Without its marker the directory is no layout: Open fails from
	// here on, and Init waits for our locks.
	if err := os.Remove(filepath.Join(l.dir, LayoutFile)); err != nil {
		return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
	}
	for _, e := range ents {
		if e.Name() == StateDir || !initLeftover(e.Name()) {
			continue // not Init's: somebody else's
		}
		if err := os.RemoveAll(filepath.Join(l.dir, e.Name())); err != nil {
			return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
		}
	}
	state := filepath.Join(l.dir, StateDir)
	ents, err = os.ReadDir(state)
	if err != nil {
		return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
	}
	for _, e := range ents {
		if e.Name() == gcLock || e.Name() == indexLock {
			continue
		}
		if err := os.RemoveAll(filepath.Join(state, e.Name())); err != nil {
			return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
		}
	}
	for _, name := range []string{indexLock, gcLock} {
		if err := os.Remove(filepath.Join(state, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("remove layout %s: %w", l.dir, err)
		}
	}
	// A directory another process has put something into meanwhile
	// stays; it holds no layout.
	if os.Remove(state) == nil && l.madeDir {
		_ = os.Remove(l.dir)
	}
	return true, nil
}
