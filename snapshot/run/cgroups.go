package run

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Hosts with hybrid cgroups (v1 controllers under a tmpfs at
// /sys/fs/cgroup and a v2 hierarchy at /sys/fs/cgroup/unified) that give
// the v2 hierarchy controllers are refused by crun ("cgroups in hybrid
// mode not supported"), whatever its cgroup manager. runc runs there.
// For crun, Run hides the v2 hierarchy in a mount namespace of the
// runtime's own, so that it sees and uses the v1 controllers alone.
const (
	cgroupRoot    = "/sys/fs/cgroup"
	cgroupUnified = "/sys/fs/cgroup/unified"
)

// startRuntime starts cmd, a command of the runtime cmd.Path, hiding
// the v2 hierarchy when the runtime needs it.
func startRuntime(cmd *exec.Cmd) error {
	if hideUnified(cmd.Path) {
		return startUnifiedHidden(cmd)
	}
	return cmd.Start()
}

// hideUnified says whether the runtime rt must be started with the v2
// hierarchy of a hybrid host hidden.
func hideUnified(rt string) bool {
	if filepath.Base(rt) != "crun" {
		return false
	}
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) != nil || st.Type != unix.TMPFS_MAGIC {
		return false
	}
	if unix.Statfs(cgroupUnified, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	b, err := os.ReadFile(filepath.Join(cgroupUnified, "cgroup.controllers"))
	return err == nil && len(bytes.TrimSpace(b)) > 0
}

// startUnifiedHidden starts cmd in a new mount namespace where a
// tmpfs covers the v2 hierarchy (crun, seeing the hybrid form, still makes its directory there: it goes with the namespace). The namespace is made on a
// thread of its own, which the child inherits it from and which ends
// with the goroutine (it is never unlocked), so nothing else of this
// process sees it. Where no mount namespace can be made, cmd starts as
// it is.
func startUnifiedHidden(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Unshare(unix.CLONE_NEWNS) == nil &&
			unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "") == nil {
			_ = unix.Mount("tmpfs", cgroupUnified, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=64k")
		}
		errc <- cmd.Start()
	}()
	return <-errc
}
