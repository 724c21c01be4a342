package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// killedUnpack makes bundle look like what an unpack of img (layout dir)
// killed midway leaves: its marker, nobody holding it, next to partial
// work (which, for overlay, includes the mounted rootfs).
func killedUnpack(t *testing.T, s *Store, img, bundle, driver string) {
	t.Helper()
	unpack(t, s, img, bundle, UnpackOptions{Driver: driver})
	rec, err := ReadRecord(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(progress{Layout: rec.Layout, Ref: rec.Ref, Manifest: rec.Manifest, Driver: driver, PID: 1})
	if err := os.WriteFile(filepath.Join(bundle, ProgressFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Killed before its record was written.
	if err := os.Remove(filepath.Join(bundle, RecordFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, RootfsDir, "half-written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The next unpack of the same image clears what a killed unpack left
// and does it again, for both drivers; another image's unpack, a live
// unpack's directory and a directory with other files are refused and
// left as they are.
func TestUnpackAfterKill(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	for _, driver := range []string{VFS, OverlayDriver} {
		t.Run(driver, func(t *testing.T) {
			s := openStore(t)
			bundle := filepath.Join(t.TempDir(), "b")
			unmountLater(t, bundle)
			killedUnpack(t, s, img, bundle, driver)
			before := snapshotFiles(t, s)
			rec := unpack(t, s, img, bundle, UnpackOptions{Driver: driver})
			if rec.Driver != driver {
				t.Fatalf("driver %s", rec.Driver)
			}
			if _, err := os.Lstat(filepath.Join(bundle, RootfsDir, "half-written")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the killed unpack's file survived the redo: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, ProgressFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("marker left after a complete unpack: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, RootfsDir, "etc", "passwd")); err != nil {
				t.Fatalf("rootfs after the redo: %v", err)
			}
			// Clearing never reached through the mount into the layers.
			if after := snapshotFiles(t, s); after != before {
				t.Fatalf("snapshots changed: %d files before, %d after", before, after)
			}
		})
	}
}

// snapshotFiles counts the files of every snapshot of s.
func snapshotFiles(t *testing.T, s *Store) int {
	t.Helper()
	n := 0
	err := filepath.Walk(filepath.Join(s.Root(), SnapshotsDir), func(_ string, _ os.FileInfo, err error) error {
		n++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestUnpackRefusesWhatIsNotItsOwn(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	other := filepath.Join(t.TempDir(), "other")
	if err := layertest.BuildImage(other, "v1", layertest.Image{Layers: layertest.Standard(nil)[:1]}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	work := t.TempDir()
	ol, err := layout.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	defer ol.Close()

	// A killed unpack of another image: refused, untouched.
	killed := filepath.Join(work, "killed")
	killedUnpack(t, s, img, killed, VFS)
	if _, err := s.Unpack(context.Background(), ol, "v1", killed, UnpackOptions{}); !errors.Is(err, ErrBundleInterrupted) {
		t.Fatalf("unpack over another image's interrupted unpack: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(killed, RootfsDir, "half-written")); err != nil {
		t.Fatalf("refused unpack changed the directory: %v", err)
	}

	// Files strata did not put there, and a finished bundle.
	foreign := filepath.Join(work, "foreign")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(foreign, "mine"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := filepath.Join(work, "done")
	unpack(t, s, img, done, UnpackOptions{})
	for _, dir := range []string{foreign, done} {
		if _, err := s.Unpack(context.Background(), ol, "v1", dir, UnpackOptions{}); !errors.Is(err, ErrBundleNotEmpty) {
			t.Fatalf("unpack into %s: %v", dir, err)
		}
	}
	if _, err := ReadRecord(done); err != nil {
		t.Fatalf("the finished bundle: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(foreign, "mine")); err != nil {
		t.Fatal(err)
	}

	// An unpack in progress (its marker held): refused, untouched.
	busy := filepath.Join(work, "busy")
	killedUnpack(t, s, img, busy, VFS)
	f, err := os.Open(filepath.Join(busy, ProgressFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	l, err := layout.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := s.Unpack(context.Background(), l, "v1", busy, UnpackOptions{}); !errors.Is(err, ErrBundleBusy) {
		t.Fatalf("unpack into a directory being unpacked: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(busy, RootfsDir, "half-written")); err != nil {
		t.Fatalf("refused unpack changed the directory: %v", err)
	}
}

// Unpacks into one new directory at once, some of them failing: a
// failure takes back only its own work, so the bundle that one of them
// finished stays whole.
func TestConcurrentUnpacksIntoOneDir(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	bad := filepath.Join(t.TempDir(), "bad")
	layers := layertest.Standard(nil)
	var diffIDs []digest.Digest
	for _, ly := range layers {
		diffIDs = append(diffIDs, layertest.DiffID(ly))
	}
	diffIDs[2] = layertest.DiffID([]byte("not this layer"))
	if err := layertest.BuildImage(bad, "v1", layertest.Image{Layers: layers, DiffIDs: diffIDs}); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	for round := range 6 {
		bundle := filepath.Join(t.TempDir(), "b")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ok []int
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				src := img
				if (i+round)%2 == 1 {
					src = bad
				}
				l, err := layout.Open(src)
				if err != nil {
					t.Error(err)
					return
				}
				defer l.Close()
				_, err = s.Unpack(context.Background(), l, "v1", bundle, UnpackOptions{})
				switch {
				case err == nil:
					if src == bad {
						t.Errorf("unpack of the bad image succeeded")
					}
					mu.Lock()
					ok = append(ok, i)
					mu.Unlock()
				case errors.Is(err, ErrBundleBusy), errors.Is(err, ErrBundleNotEmpty), errors.Is(err, layer.ErrDiffIDMismatch):
				default:
					t.Errorf("unpack %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
		if len(ok) > 1 {
			t.Fatalf("round %d: %d unpacks into one directory succeeded", round, len(ok))
		}
		if len(ok) == 1 {
			if _, err := ReadRecord(bundle); err != nil {
				t.Fatalf("round %d: the finished bundle is gone: %v", round, err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, RootfsDir, "etc", "passwd")); err != nil {
				t.Fatalf("round %d: the finished bundle's rootfs: %v", round, err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, ProgressFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("round %d: a marker is left: %v", round, err)
			}
		} else if ents, err := os.ReadDir(bundle); err == nil && len(ents) > 0 {
			t.Fatalf("round %d: nothing finished, yet the directory holds %d entries", round, len(ents))
		}
	}
}
