// Package userns lets an unprivileged strata mount overlay file systems:
// it re-executes strata inside a new user and mount namespace where the
// calling user is root.
//
// The namespace maps the user to root and, when /etc/subuid and
// /etc/subgid give the user subordinate ranges and the setuid helpers
// newuidmap and newgidmap are installed, maps those ranges to IDs 1 and
// up, so that layers keep their files' owners. Otherwise only the user is
// mapped. Mounts made inside live as long as the namespace's processes.
//
// The parent cannot run code between clone and exec, and only the setuid
// helpers may write a range mapping, so the child starts unmapped: it
// waits on a pipe until the parent has run the helpers, then executes
// itself again, which gives it root's capabilities in the namespace.
// Init must therefore run before a command does anything else.
package userns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// stageEnv tells a re-executed strata which stage of entering the
// namespace it is in: "wait" (unmapped, read fd 3) or "in" (done).
const stageEnv = "_STRATA_USERNS"

// parentEnv holds the pid of the strata that re-executed itself, which
// the one inside dies with.
const parentEnv = "_STRATA_USERNS_PARENT"

// ErrNested means a process already inside strata's namespace tried to
// enter another one.
var ErrNested = errors.New("already inside strata's user namespace")

// Range maps Size IDs starting at Inside onto IDs starting at Outside,
// as a line of /proc/PID/uid_map does.
type Range struct {
	Inside, Outside, Size uint32
}

// Mapping is a user namespace's ID mapping.
type Mapping struct {
	UIDs, GIDs []Range
}

// Ranges says whether the mapping holds more than the user itself.
func (m Mapping) Ranges() bool {
	n := func(rs []Range) uint64 {
		var t uint64
		for _, r := range rs {
			t += uint64(r.Size)
		}
		return t
	}
	return n(m.UIDs) > 1 || n(m.GIDs) > 1
}

// InNamespace reports whether the process runs in a user namespace other
// than the initial one (whose map is the whole 32-bit range onto itself).
func InNamespace() bool {
	m, err := Current()
	if err != nil {
		return false
	}
	return len(m.UIDs) != 1 || m.UIDs[0] != (Range{0, 0, 4294967295})
}

// Needed says whether strata must enter its own namespace to mount: it
// is neither root nor already inside a user namespace.
func Needed() bool { return os.Geteuid() != 0 && !InNamespace() }

// Entered says whether this process is the one strata re-executed inside
// its own namespace.
func Entered() bool { return os.Getenv(stageEnv) == "in" }

// Current reads the running process's ID mapping.
func Current() (Mapping, error) {
	var m Mapping
	var err error
	if m.UIDs, err = readMap("/proc/self/uid_map"); err != nil {
		return Mapping{}, err
	}
	if m.GIDs, err = readMap("/proc/self/gid_map"); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

func readMap(p string) ([]Range, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read id map: %w", err)
	}
	return ParseMap(string(b))
}

// ParseMap parses the text of /proc/PID/uid_map or gid_map.
func ParseMap(s string) ([]Range, error) {
	var out []Range
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return nil, fmt.Errorf("id map line %q: want 3 fields", line)
		}
		var v [3]uint32
		for i, x := range f {
			n, err := strconv.ParseUint(x, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("id map line %q: %w", line, err)
			}
			v[i] = uint32(n)
		}
		out = append(out, Range{v[0], v[1], v[2]})
	}
	return out, nil
}

// SubRange is one line of /etc/subuid or /etc/subgid.
type SubRange struct {
	Start, Count uint32
}

// ParseSubIDs returns the subordinate ranges /etc/subuid-format text
// gives to the user with the given name or numeric ID, in file order.
func ParseSubIDs(r io.Reader, name string, id int) ([]SubRange, error) {
	var out []SubRange
	sc := bufio.NewScanner(r)
	idStr := strconv.Itoa(id)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != idStr) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			continue
		}
		out = append(out, SubRange{uint32(start), uint32(count)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// Plan is the mapping strata would give its namespace for the calling
// user, and whether it needs the setuid helpers to set it up.
func Plan() (m Mapping, helpers bool) {
	uid, gid := os.Getuid(), os.Getgid()
	single := Mapping{
		UIDs: []Range{{0, uint32(uid), 1}},
		GIDs: []Range{{0, uint32(gid), 1}},
	}
	if _, err := exec.LookPath("newuidmap"); err != nil {
		return single, false
	}
	if _, err := exec.LookPath("newgidmap"); err != nil {
		return single, false
	}
	name := strconv.Itoa(uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	subs := func(file string, id int) []SubRange {
		f, err := os.Open(file)
		if err != nil {
			return nil
		}
		defer f.Close()
		rs, _ := ParseSubIDs(f, name, id)
		return rs
	}
	su, sg := subs("/etc/subuid", uid), subs("/etc/subgid", gid)
	if len(su) == 0 || len(sg) == 0 {
		return single, false
	}
	extend := func(rs []Range, subs []SubRange) []Range {
		next := uint64(1)
		for _, s := range subs {
			if next+uint64(s.Count) > 1<<32 {
				break
			}
			rs = append(rs, Range{uint32(next), s.Start, s.Count})
			next += uint64(s.Count)
		}
		return rs
	}
	return Mapping{UIDs: extend(single.UIDs, su), GIDs: extend(single.GIDs, sg)}, true
}

// Init completes entering the namespace in a process Reexec started; call
// it first thing in main (or an init function). In the waiting stage it
// blocks until the parent has written the mapping and then replaces the
// process with a fresh copy of itself, which starts as root in the
// namespace. In any other process it returns at once.
func Init() {
	if os.Getenv(stageEnv) == "in" {
		dieWithParent()
		return
	}
	if os.Getenv(stageEnv) != "wait" {
		return
	}
	sync := os.NewFile(3, "userns-sync")
	var b [1]byte
	n, _ := sync.Read(b[:])
	sync.Close()
	if n != 1 {
		// The parent failed to map us and reports why.
		os.Exit(125)
	}
	os.Setenv(stageEnv, "in")
	err := syscall.Exec("/proc/self/exe", os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "strata: enter user namespace: re-execute: %v\n", err)
	os.Exit(125)
}

// Reexec runs the current executable again with args (without argv[0])
// inside a new user and mount namespace, with the mapping Plan gives,
// forwarding stdio and termination signals, and returns its exit code.
// The child sees Entered() true. When the setuid helpers fail to map the
// subordinate ranges, the user alone is mapped. An error wrapping
// ErrUnavailable means no namespace could be made at all (the kernel or
// a security policy forbids unprivileged user namespaces).
func Reexec(args []string) (int, error) {
	if Entered() {
		return 0, ErrNested
	}
	m, helpers := Plan()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	cmd, err := start(args, m, helpers)
	if err != nil && helpers && !errors.Is(err, ErrUnavailable) {
		single, _ := Plan()
		single.UIDs, single.GIDs = single.UIDs[:1], single.GIDs[:1]
		var err2 error
		if cmd, err2 = start(args, single, false); err2 != nil {
			return 0, fmt.Errorf("%w (and with the user alone mapped: %v)", err, err2)
		}
		err = nil
	}
	if err != nil {
		return 0, err
	}
	code, err := Wait(cmd, sigs)
	if err != nil {
		return 0, fmt.Errorf("enter user namespace: %w", err)
	}
	return code, nil
}

// Wait waits for the started cmd, passing it every signal that arrives on
// sigs, and returns its exit status as a shell reports it: 128+N when
// signal N killed it. The error is only for a cmd that could not be
// waited for.
func Wait(cmd *exec.Cmd, sigs <-chan os.Signal) (int, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			return 0, err
		}
	}
}

// ErrUnavailable means the process cannot create a user namespace.
var ErrUnavailable = errors.New("user namespaces unavailable")

// start starts the child in its namespace and, with helpers, maps it
// and lets it go on.
func start(args []string, m Mapping, helpers bool) (*exec.Cmd, error) {
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Args[0] = os.Args[0]
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	var syncR, syncW *os.File
	if helpers {
		var err error
		if syncR, syncW, err = os.Pipe(); err != nil {
			return nil, fmt.Errorf("enter user namespace: %w", err)
		}
		defer syncW.Close()
		cmd.ExtraFiles = []*os.File{syncR}
		cmd.Env = append(os.Environ(), stageEnv+"=wait", parentEnv+"="+strconv.Itoa(os.Getpid()))
	} else {
		cmd.Env = append(os.Environ(), stageEnv+"=in", parentEnv+"="+strconv.Itoa(os.Getpid()))
		cmd.SysProcAttr.UidMappings = toSys(m.UIDs)
		cmd.SysProcAttr.GidMappings = toSys(m.GIDs)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
	}
	err := cmd.Start()
	if syncR != nil {
		syncR.Close()
	}
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EACCES) {
			return nil, fmt.Errorf("enter user namespace: %w: %v", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("enter user namespace: start %s: %w", os.Args[0], err)
	}
	if !helpers {
		return cmd, nil
	}
	if err := writeMaps(cmd.Process.Pid, m); err != nil {
		// Closing the pipe unwritten makes the child exit.
		syncW.Close()
		_ = cmd.Wait()
		return nil, fmt.Errorf("enter user namespace: %w", err)
	}
	if _, err := syncW.Write([]byte{1}); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("enter user namespace: %w", err)
	}
	return cmd, nil
}

// dieWithParent makes the strata inside the namespace die with the one
// that made it, as the SIGKILL parent-death signal start asks for: the
// execution that gave it root's capabilities in the namespace cleared
// that signal, so it is asked for again, and a parent that died before
// that is seen by the process's new parent.
func dieWithParent() {
	v, ok := os.LookupEnv(parentEnv)
	if !ok {
		return
	}
	// Commands this strata runs are not its re-execution.
	os.Unsetenv(parentEnv)
	parent, err := strconv.Atoi(v)
	if err != nil {
		return
	}
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() != parent {
		os.Exit(125)
	}
}

func toSys(rs []Range) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(rs))
	for i, r := range rs {
		out[i] = syscall.SysProcIDMap{ContainerID: int(r.Inside), HostID: int(r.Outside), Size: int(r.Size)}
	}
	return out
}

// writeMaps runs newuidmap and newgidmap for pid.
func writeMaps(pid int, m Mapping) error {
	for _, h := range []struct {
		tool string
		rs   []Range
	}{{"newuidmap", m.UIDs}, {"newgidmap", m.GIDs}} {
		args := []string{strconv.Itoa(pid)}
		for _, r := range h.rs {
			args = append(args, strconv.FormatUint(uint64(r.Inside), 10), strconv.FormatUint(uint64(r.Outside), 10), strconv.FormatUint(uint64(r.Size), 10))
		}
		out, err := exec.Command(h.tool, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", h.tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
