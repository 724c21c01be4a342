package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/strata-oci/strata/internal/compression"
)

// role says how a side of a workload is read in the results.
type role int

const (
	// roleStrata is strata itself; the first strata side of a workload is
	// what every ratio is computed against.
	roleStrata role = iota
	// rolePeer is another tool doing the same job.
	rolePeer
	// roleLimit is a reference that does only the unavoidable part of the
	// job (decompress and write files, hash the blobs): a floor, not a
	// competitor.
	roleLimit
)

// side is one way of doing a workload: a command timed after an untimed
// setup in a fresh scratch directory.
type side struct {
	Label string
	Role  role
	// Tools are the programs that must be on PATH.
	Tools []string
	// Unavailable, when set, says why this side cannot run on this
	// machine; it is shown instead of a time.
	Unavailable string
	// Setup prepares w.Dir (untimed). Optional.
	Setup func(w *work) error
	// Argv is the timed command.
	Argv func(w *work) []string
	// Check verifies the result (untimed) so a fast but wrong run is not
	// reported as a success. Optional.
	Check func(w *work) error
	// MaxRuns, when above 0, caps this side's runs: for a peer so slow
	// that running it as often as strata would blow the suite's time
	// budget. The table says how many runs its figure has.
	MaxRuns int
}

// target is a goal from the issue: strata side Strata is at least
// MinRatio times faster than side Peer or, with no Peer, takes at most
// Within.
type target struct {
	Strata, Peer string
	MinRatio     float64
	Within       time.Duration
}

// workload is one job, for one compression, done by every side.
type workload struct {
	Name string
	Kind compression.Kind
	// Needs are strata subcommands (with flags they must have, as
	// "unpack --driver") the strata sides use; a missing one makes the
	// workload "n/a (strata command missing)".
	Needs   []string
	Sides   []side
	Targets []target
}

func (wl *workload) id() string { return wl.Name + "/" + string(wl.Kind) }

// work is one run of one side.
type work struct {
	Dir string // empty scratch directory, removed after the run
	// Cache is a directory kept for the whole suite, shared by every run
	// of sides with the same label and compression: for setup that need
	// not be repeated (a warm snapshot store, a pristine unpacked bundle
	// to copy). Created on first use by the setup.
	Cache string
	Run   int
	Side  *side
	WL    *workload
}

// sample is what one timed run cost.
type sample struct {
	Wall   time.Duration
	CPU    time.Duration // user + system, the command and its children
	MaxRSS int64         // bytes, the largest process of the command
}

// result is every sample of one side of a workload, or why it has none.
type result struct {
	Side    *side
	Samples []sample
	// NotRun says why the side has no samples (missing tool or command).
	NotRun string
	// Failed is the first failure; the side is not run again after it.
	Failed string
	// Profile is the CPU profile of strata's first run, when asked for.
	Profile string
}

func (r *result) ok() bool { return r.NotRun == "" && r.Failed == "" && len(r.Samples) > 0 }

func (r *result) median() time.Duration {
	ws := make([]time.Duration, len(r.Samples))
	for i, s := range r.Samples {
		ws[i] = s.Wall
	}
	return medianDuration(ws)
}

func (r *result) medianCPU() time.Duration {
	ws := make([]time.Duration, len(r.Samples))
	for i, s := range r.Samples {
		ws[i] = s.CPU
	}
	return medianDuration(ws)
}

func (r *result) peakRSS() int64 {
	var m int64
	for _, s := range r.Samples {
		m = max(m, s.MaxRSS)
	}
	return m
}

// medianDuration is the middle value (the mean of the two middle ones
// for an even count); zero for none.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// runner runs workloads.
type runner struct {
	Runs       int
	Scratch    string // parent of the per-run directories
	ProfileDir string
	Timeout    time.Duration
	Logf       func(string, ...any)
	// HasStrata reports whether the strata binary has a subcommand (and
	// flags), as named in workload.Needs.
	HasStrata func(need string) bool
	// PurgeWait is how long a run waits after the trash was emptied for
	// lack of space (settleWait in a suite; tests of the harness itself
	// must not wait on the machine's free space).
	PurgeWait time.Duration
}

// runWorkload runs every side of wl r.Runs times. Runs interleave: run i
// goes through the sides starting at side i mod n, so slow drifts of the
// machine (another job starting, the page cache filling) hit every side
// alike and cancel in the ratios.
func (r *runner) runWorkload(wl *workload) []*result {
	res := make([]*result, len(wl.Sides))
	for i := range wl.Sides {
		res[i] = &result{Side: &wl.Sides[i]}
	}
	var missing []string
	for _, n := range wl.Needs {
		if !r.HasStrata(n) {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		for _, rs := range res {
			if rs.Side.Role == roleStrata {
				rs.NotRun = "n/a (strata command missing: " + strings.Join(missing, ", ") + ")"
			} else {
				rs.NotRun = "not run (no strata to compare with)"
			}
		}
		return res
	}
	for _, rs := range res {
		if rs.Side.Unavailable != "" {
			rs.NotRun = rs.Side.Unavailable
			continue
		}
		for _, t := range rs.Side.Tools {
			if _, err := exec.LookPath(t); err != nil {
				rs.NotRun = "n/a (" + t + " not installed)"
				break
			}
		}
	}
	n := len(wl.Sides)
	for run := 0; run < r.Runs; run++ {
		for k := 0; k < n; k++ {
			if stopping.Load() {
				return res
			}
			rs := res[(run+k)%n]
			if rs.NotRun != "" || rs.Failed != "" || (rs.Side.MaxRuns > 0 && len(rs.Samples) >= rs.Side.MaxRuns) {
				continue
			}
			s, prof, err := r.runOnce(wl, rs.Side, run)
			if err != nil {
				rs.Failed = err.Error()
				r.Logf("  %-28s %-32s run %d: FAILED: %v", wl.id(), rs.Side.Label, run+1, err)
				continue
			}
			if prof != "" && rs.Profile == "" {
				rs.Profile = prof
			}
			rs.Samples = append(rs.Samples, s)
			r.Logf("  %-28s %-32s run %d: %s, %s", wl.id(), rs.Side.Label, run+1, fmtDuration(s.Wall), fmtBytes(s.MaxRSS))
		}
	}
	return res
}

func (r *runner) runOnce(wl *workload, sd *side, run int) (sample, string, error) {
	r.purgeTrashIfLow()
	dir, err := os.MkdirTemp(r.Scratch, "run-")
	if err != nil {
		return sample{}, "", err
	}
	w := &work{Dir: dir, Run: run, Side: sd, WL: wl,
		Cache: filepath.Join(r.Scratch, "cache", string(wl.Kind), slug(sd.Label))}
	defer func() {
		// Mounts a run leaves in its directory (an overlay rootfs) are
		// detached first.
		if err := r.discard(dir); err != nil {
			r.Logf("  remove %s: %v", dir, err)
		}
	}()
	if sd.Setup != nil {
		if err := sd.Setup(w); err != nil {
			return sample{}, "", fmt.Errorf("setup: %w", err)
		}
	}
	// Write back what setup and earlier runs left dirty (a removed tree of
	// the last run, the bundle setup made) so that the kernel does not
	// flush it during, and charge it to, the timed command.
	syscall.Sync()
	argv := sd.Argv(w)
	env := os.Environ()
	prof := ""
	if sd.Role == roleStrata && r.ProfileDir != "" {
		prof = filepath.Join(r.ProfileDir, fmt.Sprintf("%s-%s-%s-run%d.pprof", wl.Name, wl.Kind, slug(sd.Label), run+1))
		env = append(env, "STRATA_CPUPROFILE="+prof)
	}
	s, err := measure(argv, env, w.Dir, r.Timeout)
	if err != nil {
		return s, "", err
	}
	if sd.Check != nil {
		if err := sd.Check(w); err != nil {
			return s, "", fmt.Errorf("check: %w", err)
		}
	}
	return s, prof, nil
}

// measure runs argv in dir and returns its wall time, CPU time and peak
// RSS. The command is started by a small launcher process (this program
// re-executed, see launch) because the kernel starts a child's peak RSS at
// its parent's: a child forked by this process, which holds the dataset's
// bookkeeping, would report at least this process's own peak.
func measure(argv []string, env []string, dir string, timeout time.Duration) (sample, error) {
	self, err := os.Executable()
	if err != nil {
		return sample{}, fmt.Errorf("find the launcher: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return sample{}, err
	}
	defer pr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, append([]string{launcherArg}, argv...)...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{pw}
	// The launcher and the command share a process group, killed whole on
	// timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stopping.Load() {
		pw.Close()
		return sample{}, errors.New("interrupted")
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return sample{}, fmt.Errorf("start %s: %w", argv[0], err)
	}
	pw.Close()
	running.Store(int64(cmd.Process.Pid))
	report, rerr := io.ReadAll(io.LimitReader(pr, 4096))
	err = cmd.Wait()
	running.Store(0)
	var s sample
	if rerr == nil && len(report) > 0 {
		if jerr := json.Unmarshal(report, &s); jerr != nil {
			return s, fmt.Errorf("launcher report %q: %w", report, jerr)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("timed out after %s", timeout)
		}
		msg := strings.TrimSpace(out.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return s, fmt.Errorf("%s: %w: %s", strings.Join(shortArgv(argv), " "), err, msg)
	}
	if len(report) == 0 {
		return s, fmt.Errorf("%s: the launcher reported nothing", argv[0])
	}
	return s, nil
}

// stopping is set by an interrupt: no further command is started.
var stopping atomic.Bool

// running is the process group of the command being measured, 0 when
// none: an interrupted suite kills it before cleaning up.
var running atomic.Int64

// killRunning kills the measured command's process group, if any.
func killRunning() {
	if pg := running.Load(); pg > 0 {
		_ = syscall.Kill(-int(pg), syscall.SIGKILL)
	}
}

// launcherArg, as the first argument, makes this program the launcher.
const launcherArg = "-launch-measured-command"

// launch runs argv with this process's stdio, directory and environment,
// writes its sample as JSON on file descriptor 3 and exits as it did.
// Started from a fresh, small process, the rusage of the child is the
// command's own.
func launch(argv []string) int {
	report := os.NewFile(3, "report")
	if len(argv) == 0 || report == nil {
		fmt.Fprintln(os.Stderr, "launcher: no command")
		return 127
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintln(os.Stderr, "launcher:", err)
			return 127
		}
		code = ee.ExitCode()
		if code < 0 {
			code = 128
		}
	}
	s := sample{Wall: wall}
	if ps := cmd.ProcessState; ps != nil {
		s.CPU = ps.UserTime() + ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			s.MaxRSS = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	b, _ := json.Marshal(s)
	_, _ = report.Write(b)
	report.Close()
	return code
}

// tailBuffer keeps the last 4 KiB written to it: enough for an error
// message, bounded whatever a tool prints.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.b, nil)) }

func shortArgv(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if strings.Contains(a, "/") && len(a) > 40 {
			a = ".../" + filepath.Base(a)
		}
		out[i] = a
	}
	return out
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + 'a' - 'A')
		default:
			if b.Len() > 0 && !strings.HasSuffix(b.String(), "-") {
				b.WriteByte('-')
			}
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func fmtBytes(n int64) string {
	if n <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB", float64(n)/1e6)
}
