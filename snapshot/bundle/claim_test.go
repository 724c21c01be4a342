package bundle

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
	"golang.org/x/sys/unix"
)

// The next unpack of the same image clears what a killed unpack left
// and does it again, for both drivers; another image's unpack, a live
// unpack's directory and a directory with other files are refused and
// left as they are.
func TestUnpackAfterKill(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	for _, driver := range []string{vfs.Name, overlay.Name} {
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
			if _, err := os.Lstat(filepath.Join(bundle, snapshot.RootfsDir, "half-written")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the killed unpack's file survived the redo: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, ProgressFile)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("marker left after a complete unpack: %v", err)
			}
			if _, err := os.Lstat(filepath.Join(bundle, snapshot.RootfsDir, "etc", "passwd")); err != nil {
				t.Fatalf("rootfs after the redo: %v", err)
			}
			// Clearing never reached through the mount into the layers.
			if after := snapshotFiles(t, s); after != before {
				t.Fatalf("snapshots changed: %d files before, %d after", before, after)
			}
		})
	}
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
	killedUnpack(t, s, img, killed, vfs.Name)
	if _, err := Unpack(context.Background(), s, ol, "v1", killed, UnpackOptions{}); !errors.Is(err, ErrBundleInterrupted) {
		t.Fatalf("unpack over another image's interrupted unpack: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(killed, snapshot.RootfsDir, "half-written")); err != nil {
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
		if _, err := Unpack(context.Background(), s, ol, "v1", dir, UnpackOptions{}); !errors.Is(err, ErrBundleNotEmpty) {
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
	killedUnpack(t, s, img, busy, vfs.Name)
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
	if _, err := Unpack(context.Background(), s, l, "v1", busy, UnpackOptions{}); !errors.Is(err, ErrBundleBusy) {
		t.Fatalf("unpack into a directory being unpacked: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(busy, snapshot.RootfsDir, "half-written")); err != nil {
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
				_, err = Unpack(context.Background(), s, l, "v1", bundle, UnpackOptions{})
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
			if _, err := os.Lstat(filepath.Join(bundle, snapshot.RootfsDir, "etc", "passwd")); err != nil {
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
