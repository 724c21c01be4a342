package run

import (
	"errors"
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"golang.org/x/sys/unix"
)

// checkCommand finds the process's command in the rootfs as the runtime
// will (through the PATH of its environment, relative to its working
// directory), so that a command that is not there or not executable is
// an error of its own (docker's exit statuses 127 and 126) rather than
// the runtime's exit status 1.
func checkCommand(rootfs string, p *specs.Process) error {
	name := p.Args[0]
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	defer t.Close()
	if strings.Contains(name, "/") {
		full := name
		if !path.IsAbs(full) {
			full = path.Join(p.Cwd, full)
		}
		switch executable(t, full) {
		case nil:
			return nil
		case ErrNotExecutable:
			return fmt.Errorf("%s: %w", name, ErrNotExecutable)
		}
		return fmt.Errorf("%s: %w", name, ErrCommandNotFound)
	}
	var searchPath string
	for _, e := range p.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			searchPath = v
		}
	}
	notExec := false
	for _, dir := range strings.Split(searchPath, ":") {
		if dir == "" {
			dir = "."
		}
		if !path.IsAbs(dir) {
			dir = path.Join(p.Cwd, dir)
		}
		switch executable(t, path.Join(dir, name)) {
		case nil:
			return nil
		case ErrNotExecutable:
			notExec = true
		}
	}
	if notExec {
		return fmt.Errorf("%s: %w", name, ErrNotExecutable)
	}
	return fmt.Errorf("%s: %w in $PATH", name, ErrCommandNotFound)
}

// executable says whether name in the tree is an executable file: nil,
// ErrNotExecutable, or another error when it is not there.
func executable(t *fsx.Tree, name string) error {
	fd, err := t.Open(strings.TrimPrefix(path.Clean(name), "/"), unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return errors.New("a directory")
		}
		return ErrNotExecutable
	}
	if st.Mode&0o111 == 0 {
		return ErrNotExecutable
	}
	return nil
}

// mountRootfs mounts the rootfs of a strata bundle whose rootfs is an
// overlay mount that is not mounted (after a reboot, an umount, or in a
// new user namespace) and returns what unmounts it again; anything else
// is left as it is.
func mountRootfs(dir string, o snapshot.StoreOptions) (func(), error) {
	none := func() {}
	rec, err := bundle.ReadRecord(dir)
	if errors.Is(err, bundle.ErrNotUnpacked) {
		return none, nil
	}
	if err != nil {
		return none, err
	}
	if rec.Driver != overlay.Name {
		return none, nil
	}
	b, err := bundle.Open(dir, o)
	if err != nil {
		return none, err
	}
	err = b.Mount()
	if errors.Is(err, overlay.ErrAlreadyMounted) {
		b.Close()
		return none, nil
	}
	if err != nil {
		b.Close()
		return none, err
	}
	return func() {
		_ = b.Unmount()
		b.Close()
	}, nil
}
