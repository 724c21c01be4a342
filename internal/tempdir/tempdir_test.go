package tempdir

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func TestSweep(t *testing.T) {
	base := t.TempDir()
	live, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	dead, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	dead.lock.Close() // its owner died: the directory stays, unlocked
	other, err := os.MkdirTemp(base, "other-")
	if err != nil {
		t.Fatal(err)
	}
	next, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	defer next.Remove()
	for p, want := range map[string]bool{live.Path: true, dead.Path: false, other: true, next.Path: true} {
		_, err := os.Stat(p)
		if (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	if err := next.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(next.Path); !os.IsNotExist(err) {
		t.Fatal("Remove left the directory")
	}
}

// Many processes' worth of Makes and sweeps at once (flock locks are per
// open file, so goroutines conflict as processes do): every Make gets a
// directory it holds, and no sweep removes a live one.
func TestConcurrentMakeAndSweep(t *testing.T) {
	base := t.TempDir()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 150 {
				d, err := Make(base, "w-")
				if err != nil {
					errs <- fmt.Errorf("goroutine %d, make %d: %w", g, i, err)
					return
				}
				if !linked(d.lock, filepath.Join(d.Path, lockName)) {
					errs <- fmt.Errorf("goroutine %d, make %d: %s was swept while in use", g, i, d.Path)
					return
				}
				if i%3 == 0 {
					sweep(base, "w-")
				}
				if err := d.Remove(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A directory left without its lock file (its maker killed in between)
// is swept once it is older than the grace period, not before.
func TestSweepLockless(t *testing.T) {
	base := t.TempDir()
	fresh := filepath.Join(base, "w-fresh")
	old := filepath.Join(base, "w-old")
	for _, p := range []string{fresh, old} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * noLockGrace)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	sweep(base, "w-")
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("a directory being made was swept: %v", err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("a lockless directory past the grace period stays: %v", err)
	}
}
