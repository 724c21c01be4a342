// Package run runs a process in a runtime-spec bundle (DIR/rootfs and
// DIR/config.json, as snapshot/bundle unpacks them, or any bundle)
// through an OCI runtime, crun or runc, as root or rootless, the way
// `docker run` and `podman run` run a container.
//
// The bundle's own config.json is never changed: each run writes the
// spec it gives the runtime (the bundle's, with the caller's process,
// mounts and network, adapted to where it runs, without process.rlimits)
// into a private directory of its own under Options.StateDir, pointing at
// the bundle's rootfs, and the runtime keeps its state there too:
//
//	STATEDIR/runtimes/<runtime>/   the runtime's --root
//	STATEDIR/containers/<id>/      one run: config.json, the runtime's
//	                               name, log and pid file, the
//	                               container's /etc/hosts, /etc/hostname
//	                               and /etc/resolv.conf; flock-held by the
//	                               run for its lifetime
//
// Each run has a fresh container ID (its directory's name). A run
// deletes its container (`delete --force`) and its directory when it
// ends; one that was killed leaves a directory nobody holds, and the
// next run under the same StateDir deletes that container (killing what
// is left of it) and the directory. Nothing a killed run left blocks the
// next.
//
// What the runtime creates in the rootfs only to mount something there
// (a /proc, /dev or /sys directory, an /etc/hosts file, a mount target)
// is removed after the run when still empty, so that a commit of the
// bundle does not pick it up.
//
// Run is told, never guesses, who the process is (Options.Store): as
// root it runs the bundle as its spec says; as root of strata's own user
// namespace (snapshot.StoreOptions.UserNS), where an unprivileged user's
// overlay rootfs is mounted, the container gets no user namespace of its
// own and keeps the image's user where that namespace maps it; as an
// unprivileged user outside any namespace, the container gets a user
// namespace mapping the user to root.
package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
)

// Networks a container can have.
const (
	// NetworkHost shares the host's network namespace: nothing to set
	// up, and the container reaches what the host reaches.
	NetworkHost = "host"
	// NetworkNone gives the container a network namespace of its own
	// with only the loopback interface.
	NetworkNone = "none"
)

// Mount types.
const (
	MountBind  = "bind"
	MountTmpfs = "tmpfs"
)

// Mount is a file system the container gets beside its rootfs.
type Mount struct {
	// Type is MountBind (the default) or MountTmpfs.
	Type string
	// Source is the host file or directory a bind mount shows (an
	// absolute path that must exist); unused for tmpfs.
	Source string
	// Destination is where the container sees it: an absolute path.
	Destination string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// Options are more mount options ("size=64m", "mode=0700",
	// "noexec", ...).
	Options []string
}

// Options say how to run a bundle. The zero value runs the bundle's own
// process with the host's network, no stdio and a runtime from PATH;
// StateDir is required.
type Options struct {
	// Runtime is the OCI runtime: a path, or a name looked up in PATH;
	// "" is crun, else runc (see LookRuntime).
	Runtime string
	// StateDir is where runs keep their state (the runtime's --root and
	// each run's private directory), e.g. ROOT/run under a snapshot
	// store. Required.
	StateDir string
	// Store says who this process is, as the snapshot store was opened
	// (root; root of strata's user namespace; an unprivileged user),
	// which decides the container's form (see the package comment). A
	// strata bundle whose overlay rootfs is not mounted is mounted with
	// it for the run.
	Store snapshot.StoreOptions

	// Args replace the bundle's process arguments when not empty: the
	// whole command line, entrypoint included.
	Args []string
	// Env are KEY=VALUE pairs set over the bundle's environment (a
	// KEY already there is replaced in place). The container also gets
	// PATH (when neither sets it), HOSTNAME, HOME (the user's home in
	// the rootfs's /etc/passwd, else /) and, with Terminal, TERM=xterm,
	// as docker gives them.
	Env []string
	// Cwd replaces the bundle's working directory (absolute; the
	// runtime creates it when missing).
	Cwd string
	// User replaces the bundle's user: a name, uid, name:group or
	// uid:gid, resolved through the rootfs's /etc/passwd and /etc/group
	// as docker resolves them (snapshot/spec.ResolveUser).
	User string
	// Hostname replaces the bundle's host name.
	Hostname string
	// Mounts are added after the bundle's mounts.
	Mounts []Mount
	// Network is NetworkHost ("", the default) or NetworkNone.
	Network string
	// NetworkFiles gives the container its own /etc/hostname and
	// /etc/hosts (localhost and the host name), and /etc/resolv.conf
	// when ResolvConf is set, bind-mounted over the rootfs's as docker
	// does; the rootfs's own files are not changed.
	NetworkFiles bool
	// ResolvConf, with NetworkFiles, is the container's
	// /etc/resolv.conf (the caller reads the host's); nil leaves the
	// rootfs's.
	ResolvConf []byte

	// Terminal runs the process on a pseudo-terminal of its own, which
	// the runtime attaches to its stdio: Stdin must then be a terminal
	// (*os.File).
	Terminal bool
	// Stdin, Stdout and Stderr are the container process's; nil is
	// /dev/null. An *os.File is handed to the container as it is.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Signals, when set, are sent to the container's process as they
	// arrive (the caller's Ctrl-C, SIGTERM...). The process is PID 1 of
	// its PID namespace, for which the kernel drops a signal it has no
	// handler for; Run sends SIGKILL instead of such a terminating
	// signal, so that the process ends as it would outside a container
	// (as with docker run --init), and reports 128+the signal.
	Signals <-chan os.Signal
}

// Errors of Run.
var (
	// ErrNoRuntime means no OCI runtime was found.
	ErrNoRuntime = errors.New("no OCI runtime (crun or runc) found")
	// ErrCommandNotFound means the command to run is not in the rootfs
	// (docker exits 127).
	ErrCommandNotFound = errors.New("executable file not found")
	// ErrNotExecutable means the command to run is not an executable
	// file (docker exits 126).
	ErrNotExecutable = errors.New("not an executable file")
	// ErrBadOptions means the options ask for something impossible (an
	// unknown network, a relative path, a mount source that does not
	// exist, ...).
	ErrBadOptions = errors.New("bad run options")
)

// RuntimeError means the runtime failed before the container's process
// started: the exit status is the runtime's, not the command's.
type RuntimeError struct {
	Runtime string
	// Status is the runtime's exit status.
	Status int
	// Message is what the runtime logged, when it logged an error.
	Message string
}

func (e *RuntimeError) Error() string {
	msg := fmt.Sprintf("runtime %s failed (exit status %d) before the container started", e.Runtime, e.Status)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// maxSpecSize bounds the config.json a bundle may have, as layout bounds
// the configs it reads.
const maxSpecSize = 4 << 20

// Run runs a process in the bundle dir and returns its exit status:
// the command's own, or 128+N when signal N ended it, as a shell and
// docker report it. An error means the process could not be run (the
// status is then 0): a bad option, a missing command (ErrCommandNotFound,
// ErrNotExecutable), a runtime that failed (*RuntimeError), or ctx
// cancelled, which kills the container at once. The container's state is
// deleted before Run returns, whatever happened.
func Run(ctx context.Context, dir string, o Options) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if o.StateDir == "" {
		return 0, fmt.Errorf("%w: no state directory", ErrBadOptions)
	}
	rt, err := LookRuntime(o.Runtime)
	if err != nil {
		return 0, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return 0, fmt.Errorf("bundle %s: %w", dir, err)
	}
	base, err := readSpec(abs)
	if err != nil {
		return 0, err
	}
	unmount, err := mountRootfs(abs, o.Store)
	if err != nil {
		return 0, err
	}
	defer unmount()
	c, err := newContainer(o.StateDir, rt)
	if err != nil {
		return 0, err
	}
	var st *stubs
	defer func() {
		// The container first: what it had mounted on the stubs goes
		// with it.
		c.remove()
		if st != nil {
			st.clean()
		}
	}()
	hostname := o.Hostname
	if hostname == "" {
		hostname = base.Hostname
	}
	netMounts, err := c.networkMounts(hostname, o)
	if err != nil {
		return 0, err
	}
	s, err := runSpec(base, abs, o, netMounts)
	if err != nil {
		return 0, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := checkCommand(s.Root.Path, s.Process); err != nil {
		return 0, err
	}
	if st, err = findStubs(s); err != nil {
		return 0, err
	}
	if err := c.writeSpec(s); err != nil {
		return 0, err
	}
	return c.run(ctx, o, hasPIDNamespace(s))
}

// readSpec reads the config.json of the bundle dir.
func readSpec(dir string) (*specs.Spec, error) {
	p := filepath.Join(dir, bundle.SpecFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSpecSize+1))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if len(b) > maxSpecSize {
		return nil, fmt.Errorf("bundle %s: %s is larger than %d bytes", dir, bundle.SpecFile, maxSpecSize)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("bundle %s: %s: %w", dir, bundle.SpecFile, err)
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, fmt.Errorf("bundle %s: %s has no root.path", dir, bundle.SpecFile)
	}
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	return &s, nil
}
