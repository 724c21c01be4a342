package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Check tries, inside dir, everything a snapshot driver needs from
// overlay in form x: creating a whiteout device and an opaque directory in
// a layer, mounting two layers with an upper and work directory there,
// and deleting through the mount. It cleans up after itself. A failure is
// ErrUnsupported with the reason, so that the caller can fall back.
func Check(dir string, x Xattrs) error {
	if err := check(dir, x); err != nil {
		return fmt.Errorf("%w in %s: %v", ErrUnsupported, dir, err)
	}
	return nil
}

func check(dir string, x Xattrs) (err error) {
	tmp, err := os.MkdirTemp(dir, ".overlay-check-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()
	p := func(s ...string) string { return filepath.Join(append([]string{tmp}, s...)...) }
	for _, d := range []string{"l1/d", "l2/d", "u", "w", "m"} {
		if err := os.MkdirAll(p(d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"l1/gone", "l1/d/hidden", "l1/kept"} {
		if err := os.WriteFile(p(f), nil, 0o644); err != nil {
			return err
		}
	}
	l2, err := os.Open(p("l2"))
	if err != nil {
		return err
	}
	err = MakeWhiteout(l2, "gone")
	l2.Close()
	if err != nil {
		return err
	}
	d, err := os.Open(p("l2", "d"))
	if err != nil {
		return err
	}
	err = SetOpaque(d, x)
	d.Close()
	if err != nil {
		return err
	}
	if err := Mount(p("m"), Options{Lower: []string{p("l2"), p("l1")}, Upper: p("u"), Work: p("w"), Xattrs: x}); err != nil {
		return err
	}
	defer func() {
		if uerr := Unmount(p("m")); uerr != nil && err == nil {
			err = uerr
		}
	}()
	for _, gone := range []string{"gone", "d/hidden"} {
		if _, err := os.Lstat(p("m", gone)); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("mounted layers do not hide %s (%v): whiteouts or opaque directories are not honoured", gone, err)
		}
	}
	if err := os.Remove(p("m", "kept")); err != nil {
		return fmt.Errorf("delete through the mount: %w", err)
	}
	fi, err := os.Lstat(p("u", "kept"))
	if err != nil || !IsWhiteout(fi) {
		return fmt.Errorf("delete through the mount left no whiteout in the upper directory (%v)", err)
	}
	return nil
}
