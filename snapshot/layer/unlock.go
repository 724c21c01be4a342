package layer

import (
	"errors"
	"fmt"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// UnlockDirs gives the owner rwx on every directory of the rootless tree
// dir (files lists it) that lacks it, parents first, as a driver's copy
// of a parent tree does for the next layer: unprivileged, the extractor
// cannot otherwise write under a 0555 or 0000 directory. Apply, in
// Rootless mode, puts the image's modes back when it finishes.
func UnlockDirs(dir string, files Files) error {
	var locked []string
	for p, e := range files {
		if e.Type == TypeDir && e.Mode&0o700 != 0o700 {
			locked = append(locked, p)
		}
	}
	if len(locked) == 0 {
		return nil
	}
	sortByDepth(locked, parentsFirst)
	t, err := fsx.OpenTree(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	for _, p := range locked {
		fd, err := t.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rootfs: directory %s: %w", p, err)
		}
		err = unix.Chmod(fsx.FdPath(fd), files[p].Mode&0o7777|0o700)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("rootfs: directory %s: %w", p, err)
		}
	}
	return nil
}
