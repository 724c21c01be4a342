package bundle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/idmap"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"golang.org/x/sys/unix"
)

// progress is the content of ProgressFile: what is being unpacked.
type progress struct {
	Layout   string        `json:"layout"`
	Ref      string        `json:"ref,omitempty"`
	Manifest digest.Digest `json:"manifest"`
	Driver   string        `json:"driver"`
	PID      int           `json:"pid"`
}

// bundleClaim is a bundle directory this process has marked as its own
// to write.
type bundleClaim struct {
	dir    string
	marker *os.File
	// created: this process made the directory, so a failure removes it.
	created bool
}

// claimBundle makes dir (absolute) this process's to unpack p into: a new
// directory, an empty one, or one a killed unpack of the same image left
// (whose contents are cleared first). A directory with anything else in
// it is refused, and so is one another unpack is writing.
func claimBundle(dir string, p progress) (*bundleClaim, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	marker := filepath.Join(dir, ProgressFile)
	for attempt := 0; attempt < 8; attempt++ {
		created := false
		switch err := os.Mkdir(dir, 0o700); {
		case err == nil:
			created = true
		case !errors.Is(err, fs.ErrExist):
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed by a failed unpack that made it
			}
			return nil, fmt.Errorf("bundle %s: %w", dir, err)
		}
		if len(ents) == 0 {
			c, err := newMarker(dir, marker, created, p)
			if err == nil || !errors.Is(err, errRetry) {
				return c, err
			}
			continue
		}
		c, err := takeOver(dir, marker, ents, p)
		if err == nil || !errors.Is(err, errRetry) {
			return c, err
		}
	}
	return nil, fmt.Errorf("bundle %s: %w", dir, ErrBundleBusy)
}

// errRetry makes claimBundle look at the directory again.
var errRetry = errors.New("directory changed")

// newMarker puts this process's marker into the empty directory dir.
func newMarker(dir, marker string, created bool, p progress) (*bundleClaim, error) {
	f, err := os.OpenFile(marker, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrNotExist) {
			return nil, errRetry // another unpack came first, or the directory went
		}
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	// A claimer that saw the marker empty and unlocked (ours, a moment
	// ago) may have taken it over: then it is theirs.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle %s: %w", dir, ErrBundleBusy)
	}
	if !linked(f, marker) {
		f.Close()
		return nil, errRetry
	}
	c := &bundleClaim{dir: dir, marker: f, created: created}
	if err := c.write(p); err != nil {
		c.abandon()
		return nil, err
	}
	// Something put into the directory between our look and our marker
	// (a finished bundle whose unpack had just removed its marker) is not
	// ours to clear.
	ents, err := os.ReadDir(dir)
	if err != nil {
		c.done()
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name() != ProgressFile {
			c.done()
			return nil, fmt.Errorf("bundle %s: %w (it holds %s)", dir, ErrBundleNotEmpty, e.Name())
		}
	}
	return c, nil
}

// takeOver claims a directory that holds something: only what a killed
// unpack of the same image left can be taken, and is cleared first.
func takeOver(dir, marker string, ents []os.DirEntry, p progress) (*bundleClaim, error) {
	f, err := os.OpenFile(marker, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		name := ents[0].Name()
		if _, err := os.Lstat(filepath.Join(dir, RecordFile)); err == nil {
			name = RecordFile
		}
		return nil, fmt.Errorf("bundle %s: %w (it holds %s)", dir, ErrBundleNotEmpty, name)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("bundle %s: %w", dir, ErrBundleBusy)
		}
		return nil, fmt.Errorf("bundle %s: lock %s: %w", dir, ProgressFile, err)
	}
	if !linked(f, marker) {
		f.Close()
		return nil, errRetry // its unpack finished or gave up meanwhile
	}
	c := &bundleClaim{dir: dir, marker: f}
	var old progress
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	if err := json.Unmarshal(b, &old); err != nil || old.Manifest == "" {
		// Its writer died before it described its work, so before it
		// wrote anything else: the marker must be alone.
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Name() != ProgressFile {
				f.Close()
				return nil, fmt.Errorf("bundle %s: %w (it holds %s next to an unreadable %s)", dir, ErrBundleNotEmpty, e.Name(), ProgressFile)
			}
		}
	} else if old.Manifest != p.Manifest {
		f.Close()
		return nil, fmt.Errorf("bundle %s: %w (%s, image %s): unpack that image again to finish it, or remove the directory", dir, ErrBundleInterrupted, old.Layout+refSuffix(old.Ref), old.Manifest)
	}
	if err := c.clear(); err != nil {
		f.Close()
		return nil, err
	}
	if err := c.write(p); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

func refSuffix(ref string) string {
	if ref == "" {
		return ""
	}
	return ":" + ref
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

// write records p in the marker, durably: a killed unpack's successor
// reads it.
func (c *bundleClaim) write(p progress) error {
	b, _ := json.Marshal(p)
	if err := c.marker.Truncate(0); err != nil {
		return fmt.Errorf("bundle %s: %w", c.dir, err)
	}
	if _, err := c.marker.WriteAt(b, 0); err != nil {
		return fmt.Errorf("bundle %s: %w", c.dir, err)
	}
	if err := c.marker.Sync(); err != nil {
		return fmt.Errorf("bundle %s: %w", c.dir, err)
	}
	return fsx.SyncDir(c.dir)
}

// clear removes everything but the marker from the directory: an overlay
// rootfs is unmounted first (and idmapped layers attached for it
// detached), so that nothing is removed through a mount.
func (c *bundleClaim) clear() error {
	rootfs := filepath.Join(c.dir, snapshot.RootfsDir)
	if mounted, err := overlay.IsMounted(rootfs); err == nil && mounted {
		if err := overlay.Unmount(rootfs); err != nil {
			return fmt.Errorf("bundle %s: %w", c.dir, err)
		}
	}
	if err := idmap.DetachAll(filepath.Join(c.dir, snapshot.BundleState, overlay.IDMapDir)); err != nil {
		return fmt.Errorf("bundle %s: %w", c.dir, err)
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", c.dir, err)
	}
	for _, e := range ents {
		if e.Name() == ProgressFile {
			continue
		}
		if err := fsx.RemoveAll(filepath.Join(c.dir, e.Name())); err != nil {
			return fmt.Errorf("bundle %s: %w", c.dir, err)
		}
	}
	return nil
}

// done gives the directory up with what is in it: the bundle is
// complete (or the directory not ours to clear); only the marker goes.
func (c *bundleClaim) done() error {
	err := c.removeMarker()
	c.marker.Close()
	return err
}

// abandon gives the directory up after a failed unpack: what it wrote
// goes, and the directory too when this process made it.
func (c *bundleClaim) abandon() error {
	err := c.clear()
	if rerr := c.removeMarker(); err == nil {
		err = rerr
	}
	if err == nil && c.created {
		// Another unpack may have claimed it meanwhile: then it stays.
		_ = os.Remove(c.dir)
	}
	c.marker.Close()
	return err
}

// removeMarker removes the marker while we hold it (whoever waits for it
// then finds it unlinked and looks again) and syncs the directory.
func (c *bundleClaim) removeMarker() error {
	if err := os.Remove(filepath.Join(c.dir, ProgressFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return fsx.SyncDir(c.dir)
}
