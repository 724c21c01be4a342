// Command bench measures strata side by side with its peers (umoci,
// skopeo, crane, oci-image-tool, and plain gzip/zstd/tar as a floor) on
// the same data in the same run, and prints a markdown table of median
// times, speed ratios and peak memory. `make bench` runs it as
// `go run ./tests/bench`.
//
// The data (a Debian minbase rootfs made by debootstrap, the Go toolchain
// tree, a small layer of deletions and hard links, and layouts built from
// them) is made on the first run and cached. Every figure is the median of
// -runs runs; strata and its peers alternate within each run so that noise
// from the machine falls on all of them and cancels in the ratios. Peak
// RSS comes from the rusage of each child.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// errInterrupted ends an interrupted suite with status 130.
var errInterrupted = errors.New("interrupted")

func main() {
	if len(os.Args) > 1 && os.Args[1] == launcherArg {
		os.Exit(launch(os.Args[2:]))
	}
	if err := mainErr(); err != nil {
		if errors.Is(err, errInterrupted) {
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type options struct {
	runs       int
	only       string
	dataDir    string
	profileDir string
	out        string
	strataBin  string
	timeout    time.Duration
	list       bool
}

func mainErr() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }

	only, err := parseOnly(o.only)
	if err != nil {
		return err
	}
	if o.list {
		for _, wl := range workloads(&env{Data: &dataset{}, Drivers: []string{"overlay", "vfs"}}) {
			fmt.Println(wl.id())
		}
		return nil
	}
	usePeerTools()
	unlock, err := lockData(o.dataDir, logf)
	if err != nil {
		return err
	}
	defer unlock()
	goroot := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	ds, err := prepareData(o.dataDir, goroot, logf)
	if err != nil {
		return fmt.Errorf("prepare data in %s: %w", o.dataDir, err)
	}
	if err := ds.warm(); err != nil {
		return err
	}
	scratch := filepath.Join(o.dataDir, "scratch")
	if err := makeScratch(scratch, o.dataDir); err != nil {
		return err
	}
	defer func() {
		if removeAll(scratch) == nil {
			markRemoval(o.dataDir)
		}
	}()
	settle(o.dataDir, logf)
	stopOnSignal(logf)
	bin, err := strataBinary(&o, scratch, logf)
	if err != nil {
		return err
	}
	return runSuite(o, ds, bin, scratch, only, logf)
}

// parseFlags parses the command line.
func parseFlags() (options, error) {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "runs of each side of each workload (the median is reported)")
	flag.StringVar(&o.only, "only", "", "comma-separated workloads to run (-list names them), optionally NAME/gzip or NAME/zstd")
	flag.StringVar(&o.dataDir, "data", defaultDataDir(), "cache directory for the generated data")
	flag.StringVar(&o.profileDir, "profile", "", "write a CPU profile of every strata run into this directory and summarise the profiles of missed targets")
	flag.StringVar(&o.out, "o", "", "also write the markdown report to this file")
	flag.StringVar(&o.strataBin, "strata", "", "strata binary to measure (default: build ./cmd/strata)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "limit for one command")
	flag.BoolVar(&o.list, "list", false, "list the workloads and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q (flags only; see -h)", flag.Args())
	}
	if o.runs < 1 {
		return o, errors.New("-runs must be at least 1")
	}
	return o, nil
}

// lockData makes this suite the only one using dataDir: two suites at
// once would share its scratch directory and distort each other's times,
// so a second one waits for the first.
func lockData(dataDir string, logf func(string, ...any)) (unlock func(), _ error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dataDir, "bench.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		logf("bench: another suite is using %s; waiting for it", dataDir)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
	}
	return func() { f.Close() }, nil
}

// makeScratch makes the empty directory scratch the workloads run in,
// removing the one a killed suite left.
func makeScratch(scratch, dataDir string) error {
	if _, err := os.Stat(scratch); err == nil {
		// Left by a suite that was killed.
		if err := removeAll(scratch); err != nil {
			return err
		}
		markRemoval(dataDir)
	}
	return os.MkdirAll(scratch, 0o755)
}

// stopOnSignal makes Ctrl-C kill the command being measured and start no
// other; the suite's loop then returns, and the scratch tree (with any
// mount in it) is removed on the way out.
func stopOnSignal(logf func(string, ...any)) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		logf("bench: %v: stopping", sig)
		stopping.Store(true)
		killRunning()
	}()
}

// strataBinary is the absolute path of the strata to measure: -strata,
// else one built into scratch. It makes o.profileDir absolute too.
func strataBinary(o *options, scratch string, logf func(string, ...any)) (string, error) {
	bin := o.strataBin
	if bin == "" {
		bin = filepath.Join(scratch, "strata")
		logf("building strata")
		if err := buildStrata(bin); err != nil {
			return "", err
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err != nil {
			return "", err
		}
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return "", err
		}
	}
	return bin, nil
}

// runSuite runs the workloads only selects with the strata bin and
// prints the report, writing it to -o after every workload too.
func runSuite(o options, ds *dataset, bin, scratch string, only onlySet, logf func(string, ...any)) error {
	probe := &strataProbe{bin: bin, cache: map[string]bool{}}
	e := &env{
		Strata:       strataCLI{Bin: bin},
		Data:         ds,
		Drivers:      probe.drivers(),
		CraneMissing: craneMissing(),
	}
	r := &runner{
		Runs:       o.runs,
		Scratch:    scratch,
		ProfileDir: o.profileDir,
		Timeout:    o.timeout,
		Logf:       logf,
		HasStrata:  probe.has,
		PurgeWait:  settleWait,
	}
	var reports []workloadReport
	start := time.Now()
	// Profile summaries (go tool pprof) only go in the final report.
	render := func(final bool) string {
		return renderReport(&reportInput{
			Data:     ds,
			Runs:     o.runs,
			Strata:   probe.version(),
			Reports:  reports,
			Elapsed:  time.Since(start),
			Profiles: final && o.profileDir != "",
			Bin:      bin,
		})
	}
	for _, wl := range workloads(e) {
		if !only.match(wl) {
			continue
		}
		logf("%s", wl.id())
		reports = append(reports, workloadReport{WL: wl, Results: r.runWorkload(wl)})
		if stopping.Load() {
			return errInterrupted
		}
		// The file always holds what is measured so far: a long suite
		// stopped half way still leaves its figures.
		if o.out != "" {
			if err := os.WriteFile(o.out, []byte(render(false)), 0o644); err != nil {
				return fmt.Errorf("write %s: %w", o.out, err)
			}
		}
	}
	md := render(true)
	fmt.Print(md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", o.out, err)
		}
	}
	return nil
}

// buildStrata builds ./cmd/strata of the module the current directory is
// in.
func buildStrata(bin string) error {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return errors.New("run the benchmark from inside the strata module (go run ./tests/bench), or pass -strata BIN")
	}
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/strata")
	cmd.Dir = filepath.Dir(mod)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build strata: %w\n%s", err, errb.String())
	}
	return nil
}

// onlySet is the -only filter.
type onlySet map[string]bool

func parseOnly(s string) (onlySet, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	known := map[string]bool{}
	for _, wl := range workloads(&env{Data: &dataset{}, Drivers: []string{"vfs"}}) {
		known[wl.Name], known[wl.id()] = true, true
	}
	set := onlySet{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !known[f] {
			return nil, fmt.Errorf("-only: unknown workload %q (see -list)", f)
		}
		set[f] = true
	}
	return set, nil
}

func (o onlySet) match(wl *workload) bool {
	return len(o) == 0 || o[wl.Name] || o[wl.id()]
}

// strataProbe finds out which commands and flags the strata binary has,
// so a workload whose command is not written yet says so instead of
// failing.
type strataProbe struct {
	bin   string
	cache map[string]bool
}

// has reports whether need ("unpack --driver": a subcommand and flags it
// must take; "--root": a global flag) is supported.
func (p *strataProbe) has(need string) bool {
	if v, ok := p.cache[need]; ok {
		return v
	}
	f := strings.Fields(need)
	var args []string
	var flags []string
	for _, x := range f {
		if strings.HasPrefix(x, "-") {
			flags = append(flags, x)
		} else {
			args = append(args, x)
		}
	}
	out, err := exec.Command(p.bin, append(args, "--help")...).CombinedOutput()
	ok := err == nil
	if ok && len(args) > 0 {
		// cobra prints the parent's help for an unknown subcommand of a
		// command that has none; the usage line names the command.
		ok = bytes.Contains(out, []byte("strata "+strings.Join(args, " ")))
	}
	for _, fl := range flags {
		ok = ok && helpHasFlag(string(out), fl)
	}
	p.cache[need] = ok
	return ok
}

// helpHasFlag reports whether cobra help text lists flag (as "--name"
// followed by a space, "=", a comma or the end of a line).
func helpHasFlag(help, flag string) bool {
	if flag == "" {
		return false
	}
	for i := 0; ; {
		j := strings.Index(help[i:], flag)
		if j < 0 {
			return false
		}
		end := i + j + len(flag)
		if end == len(help) || strings.ContainsRune(" =,\n", rune(help[end])) {
			return true
		}
		i = end
	}
}

// drivers lists the snapshot drivers to time: overlay and vfs when strata
// has them, vfs alone when the unpack help lists only vfs.
func (p *strataProbe) drivers() []string {
	out, err := exec.Command(p.bin, "unpack", "--help").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("overlay")) {
		return []string{"vfs"}
	}
	return []string{"overlay", "vfs"}
}

func (p *strataProbe) version() string {
	out, err := exec.Command(p.bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// peerToolDir is where tests/setup.sh installs the peers Debian does not
// package (crane, oras, cosign) with go install.
const peerToolDir = "/var/cache/strata-tests/gobin"

// usePeerTools puts peerToolDir first on PATH, so that every workload and
// the report's version line find the same crane.
func usePeerTools() {
	if fi, err := os.Stat(peerToolDir); err == nil && fi.IsDir() {
		os.Setenv("PATH", peerToolDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
}

// craneMissing says why crane cannot be compared, or "" when it is
// installed. crane is not packaged in Debian 12; apt-cache tells whether
// this machine's release has it.
func craneMissing() string {
	if _, err := exec.LookPath("crane"); err == nil {
		return ""
	}
	out, err := exec.Command("apt-cache", "policy", "crane").Output()
	if err == nil && bytes.Contains(out, []byte("Candidate:")) && !bytes.Contains(out, []byte("Candidate: (none)")) {
		return "n/a (crane not installed: apt-get install crane)"
	}
	return "n/a (crane is not packaged in Debian " + debianVersion() + ")"
}

func debianVersion() string {
	b, err := os.ReadFile("/etc/debian_version")
	if err != nil {
		return "(unknown release)"
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(b)), ".")
	return v
}
