package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
)

// snapshot.Rebase moves the bundle onto the chain r.Chain. The bundle's record
// moves first (r.Save): its old upper directory over the new chain still
// shows the same tree (what it holds is in the new layer too), so that
// an interruption at any point leaves a working bundle. Then the upper
// directory is swapped for a fresh one and the rootfs remounted if it
// was mounted; leftovers of an interrupted swap are put right by the
// next commit (Recover).
func (o *Driver) Rebase(_ context.Context, ctr *snapshot.Container, r snapshot.Rebase) error {
	newCtr := &snapshot.Container{Dir: ctr.Dir, Chain: r.Chain, Rootless: ctr.Rootless, IDMap: ctr.IDMap}
	mounted, err := IsMounted(ctr.Rootfs())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	sw, err := o.nextUpper(newCtr, r.Save)
	if err != nil {
		return err
	}
	// From here on the bundle is on the new image.
	if mounted {
		if err := o.Unmount(ctr); err != nil {
			sw.cleanNext()
			return fmt.Errorf("the bundle is on the new image with its old upper directory: %w", err)
		}
	}
	swapErr := sw.swap()
	if swapErr != nil {
		sw.cleanNext()
	}
	if mounted {
		if err := o.Mount(newCtr); err != nil {
			return fmt.Errorf("remount %s on the new image: %w: %w", newCtr.Rootfs(), ErrRemount, err)
		}
	}
	if swapErr != nil {
		return fmt.Errorf("the bundle is on the new image with its old upper directory: %w", swapErr)
	}
	if err := fsx.RemoveAll(sw.oldUpper); err != nil {
		return err
	}
	return fsx.RemoveAll(sw.oldWork)
}

// upperSwap is the replacement of a bundle's upper and work directories
// by fresh ones: the current pair, the next pair made aside, and the
// names the current pair moves to.
type upperSwap struct {
	upper, work         string
	nextUpper, nextWork string
	oldUpper, oldWork   string
}

// nextUpper makes the next upper and work directories of ctr aside, the
// upper one with the metadata of ctr's top layer's root, then records
// the move (save).
func (o *Driver) nextUpper(ctr *snapshot.Container, save func() error) (*upperSwap, error) {
	next, err := os.MkdirTemp(ctr.State(), UpperDir+swapNext)
	if err != nil {
		return nil, err
	}
	suffix := strings.TrimPrefix(filepath.Base(next), UpperDir+swapNext)
	sw := &upperSwap{
		upper: o.upper(ctr), work: o.work(ctr),
		nextUpper: next, nextWork: filepath.Join(ctr.State(), WorkDir+swapNext+suffix),
		oldUpper: filepath.Join(ctr.State(), UpperDir+swapOld+suffix), oldWork: filepath.Join(ctr.State(), WorkDir+swapOld+suffix),
	}
	err = os.Mkdir(sw.nextWork, 0o700)
	if err == nil {
		err = os.Chmod(sw.nextUpper, 0o755)
	}
	if err == nil {
		err = copyRootMetaShifted(ctr.Top().FS(), sw.nextUpper, ctr.IDMap)
	}
	if err == nil {
		err = save()
	}
	if err != nil {
		sw.cleanNext()
		return nil, fmt.Errorf("new upper directory: %w", err)
	}
	return sw, nil
}

// cleanNext removes the next pair, never put in place.
func (sw *upperSwap) cleanNext() {
	_ = fsx.RemoveAll(sw.nextUpper)
	_ = fsx.RemoveAll(sw.nextWork)
}

// swap puts the next pair in place of the current one, which moves to
// the old names; on error it puts back what it moved.
func (sw *upperSwap) swap() error {
	if err := os.Rename(sw.upper, sw.oldUpper); err != nil {
		return err
	}
	if err := os.Rename(sw.work, sw.oldWork); err != nil {
		_ = os.Rename(sw.oldUpper, sw.upper)
		return err
	}
	if err := os.Rename(sw.nextUpper, sw.upper); err != nil {
		_ = os.Rename(sw.oldUpper, sw.upper)
		_ = os.Rename(sw.oldWork, sw.work)
		return err
	}
	if err := os.Rename(sw.nextWork, sw.work); err != nil {
		_ = os.Rename(sw.upper, sw.nextUpper)
		_ = os.Rename(sw.oldUpper, sw.upper)
		_ = os.Rename(sw.oldWork, sw.work)
		return err
	}
	return nil
}

// Name parts of the directories an upper directory swap uses.
const (
	swapNext = ".next-"
	swapOld  = ".old-"
)

// Recover puts right what an interrupted upper directory swap (snapshot.Rebase)
// left in the bundle's state directory: with no upper directory, the old
// one comes back (it is valid over either chain); fresh ones never put
// in place and old ones already replaced are removed.
func (o *Driver) Recover(ctr *snapshot.Container) error {
	state := ctr.State()
	ents, err := os.ReadDir(state)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", ctr.Dir, err)
	}
	for _, pair := range [][2]string{{o.upper(ctr), UpperDir}, {o.work(ctr), WorkDir}} {
		cur, name := pair[0], pair[1]
		_, statErr := os.Lstat(cur)
		for _, e := range ents {
			n := e.Name()
			p := filepath.Join(state, n)
			switch {
			case strings.HasPrefix(n, name+swapNext):
				if err := fsx.RemoveAll(p); err != nil {
					return err
				}
			case strings.HasPrefix(n, name+swapOld):
				if errors.Is(statErr, os.ErrNotExist) {
					if err := os.Rename(p, cur); err != nil {
						return fmt.Errorf("bundle %s: restore %s: %w", ctr.Dir, n, err)
					}
					statErr = nil
					continue
				}
				if err := fsx.RemoveAll(p); err != nil {
					return err
				}
			}
		}
		if errors.Is(statErr, os.ErrNotExist) && name == WorkDir {
			if err := os.Mkdir(cur, 0o700); err != nil {
				return fmt.Errorf("bundle %s: %w", ctr.Dir, err)
			}
		}
	}
	return nil
}
