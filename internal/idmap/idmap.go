// Package idmap makes idmapped mounts: detached clones of directories
// whose files show their owners shifted by a user-namespace mapping,
// without touching the files (mount_setattr with MOUNT_ATTR_IDMAP,
// Linux 5.12+). The overlay driver mounts its shared layers through them
// for a bundle unpacked with --uid-map/--gid-map.
package idmap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Range maps Size IDs from ContainerID on to host IDs from HostID, as a
// line of /proc/PID/uid_map does.
type Range struct {
	ContainerID, HostID, Size uint32
}

// identity is what an empty list of ranges means: IDs unchanged.
var identity = []Range{{0, 0, 1<<32 - 1}}

// UsernsFD returns a descriptor of a new user namespace with the given
// mappings (an empty list maps every ID to itself). A namespace lives
// only as long as a process or a descriptor holds it, so a child is
// started in it and killed once the descriptor is open. The child is
// ptraced: it stops at its exec, before running any code, so what it
// would execute does not matter.
func UsernsFD(uids, gids []Range) (int, error) {
	if len(uids) == 0 {
		uids = identity
	}
	if len(gids) == 0 {
		gids = identity
	}
	sysMap := func(rs []Range) []syscall.SysProcIDMap {
		out := make([]syscall.SysProcIDMap, len(rs))
		for i, r := range rs {
			out[i] = syscall.SysProcIDMap{ContainerID: int(r.ContainerID), HostID: int(r.HostID), Size: int(r.Size)}
		}
		return out
	}
	// The tracer is the starting thread: it must not go away while the
	// child lives, or the child would run on untraced.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"strata-idmap"}, Env: []string{}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: sysMap(uids),
		GidMappings: sysMap(gids),
		Ptrace:      true,
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("user namespace for the id map: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	fd, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid)+"/ns/user", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("user namespace for the id map: %w", err)
	}
	return fd, nil
}

// Mounts is a set of idmapped clones of directories.
type Mounts struct {
	fds []int
}

// Clone makes an idmapped, detached clone of each directory in dirs,
// shifted by the mappings (container IDs on disk show as host IDs).
// Close releases them; a mount made from Paths keeps its own reference
// to each (overlay clones its layers privately), so Close can follow
// the mount at once.
func Clone(dirs []string, uids, gids []Range) (_ *Mounts, err error) {
	userns, err := UsernsFD(uids, gids)
	if err != nil {
		return nil, err
	}
	defer unix.Close(userns)
	m := &Mounts{}
	defer func() {
		if err != nil {
			m.Close()
		}
	}()
	for _, d := range dirs {
		fd, err := unix.OpenTree(unix.AT_FDCWD, d, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.ENOSYS) {
				return nil, fmt.Errorf("idmapped mount of %s: kernel lacks open_tree (Linux 5.2+): %w", d, err)
			}
			return nil, &os.PathError{Op: "clone mount", Path: d, Err: err}
		}
		m.fds = append(m.fds, fd)
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err != nil {
			return nil, fmt.Errorf("idmapped mount of %s (the file system or kernel may not support idmapped mounts): %w", d, err)
		}
	}
	return m, nil
}

// Paths names the clones, in the order of Clone's dirs, as
// /proc/self/fd links: any path-taking call of this process reaches the
// clone through them while m is open.
func (m *Mounts) Paths() []string {
	out := make([]string, len(m.fds))
	for i, fd := range m.fds {
		out[i] = "/proc/self/fd/" + strconv.Itoa(fd)
	}
	return out
}

// Close releases the clones (a detached mount goes away with its last
// reference).
func (m *Mounts) Close() {
	for _, fd := range m.fds {
		unix.Close(fd)
	}
	m.fds = nil
}

// DetachedLayers says whether overlay takes detached mounts as layers
// (Linux 6.15 on). Before, a clone must be attached somewhere first.
func DetachedLayers() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var major, minor int
	if n, _ := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); n != 2 {
		return false
	}
	return major > 6 || (major == 6 && minor >= 15)
}

// Attach mounts the clones on new directories dir/0, dir/1, ... (dir is
// created, mode 0700, and must not exist), for kernels whose overlay
// takes no detached layers, and returns their paths. detach unmounts
// them (lazily: a mount made from them keeps its own copies) and removes
// the directories. A process killed in between leaves them mounted:
// DetachAll clears them.
func (m *Mounts) Attach(dir string) (paths []string, detach func() error, err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("attach idmapped mounts: %w", err)
	}
	detach = func() error { return DetachAll(dir) }
	defer func() {
		if err != nil {
			_ = detach()
		}
	}()
	for i, fd := range m.fds {
		p := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(p, 0o700); err != nil {
			return nil, nil, fmt.Errorf("attach idmapped mounts: %w", err)
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return nil, nil, &os.PathError{Op: "attach idmapped mount", Path: p, Err: err}
		}
		paths = append(paths, p)
	}
	return paths, detach, nil
}

// DetachAll unmounts what is mounted on the entries of dir and removes
// them and dir; a missing dir is fine. It never removes a file: an entry
// still mounted, or not an empty directory, is an error, so that nothing
// is ever deleted through a mount.
func DetachAll(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("detach idmapped mounts: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		for {
			err := unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			if err == unix.EINTR {
				continue
			}
			if err != nil && err != unix.EINVAL && err != unix.ENOENT {
				return &os.PathError{Op: "detach idmapped mount", Path: p, Err: err}
			}
			break
		}
		if err := unix.Rmdir(p); err != nil && err != unix.ENOENT {
			return &os.PathError{Op: "remove idmapped mount point", Path: p, Err: err}
		}
	}
	if err := unix.Rmdir(dir); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "remove", Path: dir, Err: err}
	}
	return nil
}
