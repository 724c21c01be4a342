package run

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/tempdir"
	"golang.org/x/sys/unix"
)

// Runtimes Run looks for in PATH, in order, when none is named.
var defaultRuntimes = []string{"crun", "runc"}

// LookRuntime finds an OCI runtime: name as a path (when it holds a
// slash) or looked up in PATH; "" is crun, else runc. It returns the
// runtime's absolute path, or an error wrapping ErrNoRuntime.
func LookRuntime(name string) (string, error) {
	names := defaultRuntimes
	if name != "" {
		names = []string{name}
	}
	var errs []string
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err == nil {
			if abs, err := filepath.Abs(p); err == nil {
				return abs, nil
			}
			return p, nil
		}
		errs = append(errs, err.Error())
	}
	if name != "" {
		return "", fmt.Errorf("%w: %s", ErrNoRuntime, strings.Join(errs, "; "))
	}
	return "", fmt.Errorf("%w in PATH", ErrNoRuntime)
}

// Directories and files under Options.StateDir.
const (
	runtimesDir   = "runtimes"
	containersDir = "containers"
	// containerPrefix starts the name of each run's directory, which is
	// its container ID.
	containerPrefix = "strata-"

	infoFile = "runtime.json"
	pidFile  = "pid"
	logFile  = "runtime.log"
)

// info is what a run's directory records for whoever cleans up after it.
type info struct {
	Runtime string `json:"runtime"`
	Root    string `json:"root"`
	ID      string `json:"id"`
}

// container is one run: its private directory (held while it runs), its
// ID and runtime.
type container struct {
	info
	dir *tempdir.Dir
}

// newContainer makes the private directory of a new run under stateDir,
// for the runtime rt, after cleaning up what killed runs left.
func newContainer(stateDir, rt string) (*container, error) {
	cdir := filepath.Join(stateDir, containersDir)
	root := filepath.Join(stateDir, runtimesDir, filepath.Base(rt))
	for _, d := range []string{cdir, root} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("run state: %w", err)
		}
	}
	sweep(stateDir, rt)
	d, err := tempdir.Make(cdir, containerPrefix)
	if err != nil {
		return nil, fmt.Errorf("run state: %w", err)
	}
	c := &container{info: info{Runtime: rt, Root: root, ID: filepath.Base(d.Path)}, dir: d}
	b, _ := json.Marshal(c.info)
	if err := fsx.WriteFile(c.path(infoFile), b, 0o600); err != nil {
		d.Remove()
		return nil, fmt.Errorf("run state: %w", err)
	}
	return c, nil
}

func (c *container) path(name string) string { return filepath.Join(c.dir.Path, name) }

// writeSpec writes the run's config.json.
func (c *container) writeSpec(s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return fsx.WriteFile(c.path("config.json"), b, 0o600)
}

// remove deletes the container and the run's directory.
func (c *container) remove() {
	deleteContainer(c.info)
	_ = c.dir.Remove()
}

// deleteContainer deletes the container of a run from its runtime's
// state, killing what is left of it. A runtime run in the foreground
// deletes its container when it exits: this is for a run that was
// killed, or a runtime that was.
func deleteContainer(in info) {
	if _, err := os.Lstat(filepath.Join(in.Root, in.ID)); errors.Is(err, fs.ErrNotExist) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, in.Runtime, "--root", in.Root, "delete", "--force", in.ID)
	cmd.Env = runtimeEnv()
	if startRuntime(cmd) == nil {
		_ = cmd.Wait()
	}
}

// sweep cleans up after killed runs under stateDir (sweepContainers),
// and deletes the containers runtime rt still lists with no run
// directory.
func sweep(stateDir, rt string) {
	sweepContainers(stateDir)
	cdir := filepath.Join(stateDir, containersDir)
	root := filepath.Join(stateDir, runtimesDir, filepath.Base(rt))
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), containerPrefix) {
			continue
		}
		if _, err := os.Lstat(filepath.Join(cdir, e.Name())); errors.Is(err, fs.ErrNotExist) {
			deleteContainer(info{Runtime: rt, Root: root, ID: e.Name()})
		}
	}
}

// sweepContainers deletes the containers of the run directories under
// stateDir that nobody holds (with the runtime each recorded), then the
// directories.
func sweepContainers(stateDir string) {
	cdir := filepath.Join(stateDir, containersDir)
	ents, _ := os.ReadDir(cdir)
	for _, e := range ents {
		if e.IsDir() && strings.HasPrefix(e.Name(), containerPrefix) {
			sweepOne(filepath.Join(cdir, e.Name()))
		}
	}
}

// sweepOne deletes the run directory p and its container if the run
// that made it is dead (nobody holds the directory's lock).
func sweepOne(p string) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return
	}
	if b, err := os.ReadFile(filepath.Join(p, infoFile)); err == nil {
		var in info
		if json.Unmarshal(b, &in) == nil && in.ID == filepath.Base(p) && in.Runtime != "" && in.Root != "" {
			deleteContainer(in)
		}
	}
	_ = os.RemoveAll(p)
}

// runtimeEnv is the runtime's environment: strata's, without what would
// make the runtime act for a service manager strata runs under.
func runtimeEnv() []string {
	var out []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES":
			continue
		}
		out = append(out, e)
	}
	return out
}

// run runs the container in the foreground and returns its process's
// exit status; see Run.
func (c *container) run(ctx context.Context, o Options, pidNS bool) (int, error) {
	cmd := exec.Command(c.Runtime, "--root", c.Root, "--log", c.path(logFile), "--log-format", "json",
		"run", "--bundle", c.dir.Path, "--pid-file", c.path(pidFile), c.ID)
	cmd.Dir = c.dir.Path
	cmd.Env = runtimeEnv()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	if err := startRuntime(cmd); err != nil {
		return 0, fmt.Errorf("start runtime %s: %w", c.Runtime, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	p := &process{fd: -1, pidNS: pidNS}
	defer p.close()
	var pending []os.Signal
	cancelled := ctx.Done()
	var killed bool
	var hardKill, recheck <-chan time.Time
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	var waitErr error
wait:
	for {
		select {
		case waitErr = <-done:
			break wait
		case s := <-o.Signals:
			if p.fd == -1 {
				pending = append(pending, s)
				continue
			}
			if p.signal(s) {
				recheck = time.After(recheckAfter)
			}
		case <-recheck:
			p.recheck()
		case <-cancelled:
			cancelled = nil
			killed = true
			p.kill()
			// A runtime that never starts the container, or hangs,
			// is killed itself; delete --force cleans up after it.
			hardKill = time.After(5 * time.Second)
		case <-hardKill:
			_ = cmd.Process.Kill()
		case <-poll.C:
			if p.fd != -1 || !p.open(c.path(pidFile)) {
				continue
			}
			poll.Stop()
			if killed {
				p.kill()
			}
			for _, s := range pending {
				if p.signal(s) {
					recheck = time.After(recheckAfter)
				}
			}
			pending = nil
		}
	}
	code, err := exitStatus(waitErr)
	if err != nil {
		return 0, fmt.Errorf("runtime %s: %w", c.Runtime, err)
	}
	if killed {
		return 0, ctx.Err()
	}
	if _, err := os.Stat(c.path(pidFile)); err != nil && code != 0 {
		// The container never got a process: the runtime failed.
		return 0, &RuntimeError{Runtime: filepath.Base(c.Runtime), Status: code, Message: runtimeLogError(c.path(logFile))}
	}
	if p.escalated != 0 && code == 128+int(unix.SIGKILL) {
		code = 128 + int(p.escalated)
	}
	return code, nil
}

// exitStatus is a waited-for process's exit status as a shell gives it.
func exitStatus(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return 0, err
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ee.ExitCode(), nil
}

// runtimeLogError is the last error the runtime logged (runc and crun
// write JSON lines with --log-format json).
func runtimeLogError(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(io.LimitReader(f, 1<<20))
	for sc.Scan() {
		var e struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &e) == nil && (e.Level == "error" || e.Level == "fatal") && e.Msg != "" {
			last = e.Msg
		}
	}
	return strings.TrimSpace(last)
}

// process is the container's process, once the runtime has written its
// pid: held by a pidfd, so that a signal never reaches another process
// that got its pid.
type process struct {
	// fd is the pidfd; -1 before the pid is known, -2 when the process
	// was gone by then.
	fd, pid int
	pidNS   bool
	// escalated is the signal that SIGKILL stood in for; sent the last
	// terminating signal sent as it is.
	escalated, sent unix.Signal
}

// open reads the pid file and opens the process; false when the runtime
// has not written it yet.
func (p *process) open(pidPath string) bool {
	if p.fd != -1 {
		return true
	}
	b, err := os.ReadFile(pidPath)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		// Gone already: there is nothing left to signal.
		p.fd = -2
		return true
	}
	p.fd, p.pid = fd, pid
	return true
}

func (p *process) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
}

func (p *process) kill() {
	if p.fd >= 0 {
		_ = unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
	}
}

// signal sends s to the process; a terminating signal it neither
// handles nor ignores, which the kernel would drop for a PID 1, becomes
// SIGKILL.
// It says whether to look again (recheck) a little later: a process
// that handled the signal may have been about to execute a program that
// does not (a shell's exec), which loses it.
func (p *process) signal(s os.Signal) bool {
	sig, ok := s.(syscall.Signal)
	if !ok || p.fd < 0 {
		return false
	}
	us := unix.Signal(sig)
	if !p.pidNS || !terminates(us) {
		_ = unix.PidfdSendSignal(p.fd, us, nil, 0)
		return false
	}
	if !disposed(p.pid, us) {
		p.escalated = us
		_ = unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
		return false
	}
	_ = unix.PidfdSendSignal(p.fd, us, nil, 0)
	p.sent = us
	return true
}

// recheckAfter is how long after a handled terminating signal the
// process is looked at again.
const recheckAfter = 200 * time.Millisecond

// recheck sends SIGKILL for the last terminating signal sent when the
// process, still there, no longer handles nor ignores it.
func (p *process) recheck() {
	if p.fd < 0 || p.sent == 0 || disposed(p.pid, p.sent) {
		return
	}
	p.escalated = p.sent
	_ = unix.PidfdSendSignal(p.fd, unix.SIGKILL, nil, 0)
}

// terminates says whether sig's default action ends a process.
func terminates(sig unix.Signal) bool {
	switch sig {
	case unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1, unix.SIGUSR2,
		unix.SIGALRM, unix.SIGPIPE, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGVTALRM, unix.SIGPROF:
		return true
	}
	return false
}

// disposed says whether the process pid catches or ignores sig, from
// /proc/PID/status; when that cannot be read, it is taken to.
func disposed(pid int, sig unix.Signal) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true
	}
	bit := uint64(1) << (uint(sig) - 1)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigCgt" && k != "SigIgn") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil || mask&bit != 0 {
			return true
		}
	}
	return false
}

// statSource checks a bind mount's source exists.
func statSource(p string) (os.FileInfo, error) {
	return os.Stat(p)
}
