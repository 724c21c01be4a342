package layout

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Added records the blobs that a write operation put into a layout (not
// those it found there), so that the operation can take them back with
// Discard when it fails. Safe for concurrent use.
type Added struct {
	mu sync.Mutex
	ds []digest.Digest
}

// Add records d.
func (a *Added) Add(d digest.Digest) {
	a.mu.Lock()
	a.ds = append(a.ds, d)
	a.mu.Unlock()
}

// take returns the recorded digests and forgets them.
func (a *Added) take() []digest.Digest {
	a.mu.Lock()
	defer a.mu.Unlock()
	ds := a.ds
	a.ds = nil
	return ds
}

// Discard removes the blobs a recorded that index.json does not reach, so
// a failed operation leaves the layout as it was. It does so only when no
// other process holds the layout for writing: another writer may be about
// to name one of those blobs, having found it there. Otherwise they stay
// for gc. It returns how many blobs it removed.
func (l *Layout) Discard(a *Added) (int, error) {
	ds := a.take()
	if len(ds) == 0 {
		return 0, nil
	}
	l.mu.Lock()
	lock := l.gcLock
	l.mu.Unlock()
	if lock == nil {
		return 0, nil // never held: wrote nothing
	}
	// Converting a shared flock to exclusive drops it first; when the
	// conversion fails the shared hold has to be taken again.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if err := unix.Flock(int(lock.Fd()), unix.LOCK_SH); err != nil {
			return 0, fmt.Errorf("lock layout %s: %w", l.dir, err)
		}
		return 0, nil
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_SH)
	return l.discardHeld(ds)
}

// discardHeld removes the blobs of ds that index.json does not reach. The
// caller holds gc.lock exclusively.
func (l *Layout) discardHeld(ds []digest.Digest) (int, error) {
	idx, err := l.Index()
	if err != nil {
		return 0, err
	}
	// Taking back runs after a failure or a cancel: it is not cancelled.
	reached, err := l.reachable(context.Background(), idx)
	if err != nil {
		return 0, fmt.Errorf("discard: %w", err)
	}
	n := 0
	for _, d := range ds {
		if reached[d] {
			continue
		}
		if err := l.blobs.Delete(d); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
