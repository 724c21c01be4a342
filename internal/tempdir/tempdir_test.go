package tempdir

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
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
				if !linked(d.lock, d.Path) {
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

// A directory whose maker was killed before it locked it is free: the
// next Make sweeps it.
func TestSweepNeverLocked(t *testing.T) {
	base := t.TempDir()
	killed := filepath.Join(base, "w-killed")
	if err := os.Mkdir(killed, 0o700); err != nil {
		t.Fatal(err)
	}
	d, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Remove()
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Fatalf("a directory nobody locks stays: %v", err)
	}
}
