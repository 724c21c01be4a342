package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/debmirror"
)

// rssLimit is the memory target for every strata run.
const rssLimit = 100 << 20

type workloadReport struct {
	WL      *workload
	Results []*result
}

type reportInput struct {
	Data     *dataset
	Runs     int
	Strata   string
	Reports  []workloadReport
	Elapsed  time.Duration
	Profiles bool
	Bin      string
}

// renderReport writes the markdown report: the machine and data, one
// table of every side's median time, its time relative to strata's,
// peak RSS and CPU time, then the targets of the issue met or missed.
func renderReport(in *reportInput) string {
	rb := &reportBuilder{in: in, profiled: map[*result]bool{}, rssOK: true}
	b := &rb.b
	writeReportHeader(b, in)
	b.WriteString("`× strata` is the side's median time divided by strata's: above 1 strata is faster. Peak RSS is the largest of any process of the command over all runs.\n\n")
	b.WriteString("| workload | comp. | tool | median | × strata | peak RSS | CPU (user+sys) |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|\n")
	for _, rep := range in.Reports {
		rb.workload(rep)
	}
	b.WriteString("\n### Targets\n\n| workload | target | measured | |\n|---|---|---:|---|\n")
	for _, t := range rb.targets {
		b.WriteString(t)
	}
	if rb.rssWho != "" {
		status := "met"
		if !rb.rssOK {
			status = "**missed**"
		}
		fmt.Fprintf(b, "| all | strata peak RSS < 100 MB | %s (%s) | %s |\n", fmtBytes(rb.rssMax), rb.rssWho, status)
	}
	if len(rb.failures) > 0 {
		b.WriteString("\n### Failures\n\n")
		for _, f := range rb.failures {
			b.WriteString(f)
		}
	}
	if len(rb.profiles) > 0 {
		b.WriteString("\n### Profiles of missed targets\n\n")
		for _, p := range rb.profiles {
			b.WriteString(p)
		}
	}
	return b.String()
}

// writeReportHeader writes what the report is of: when, on what machine,
// which versions and which data.
func writeReportHeader(b *strings.Builder, in *reportInput) {
	fmt.Fprintf(b, "## strata benchmark\n\n")
	fmt.Fprintf(b, "%s; %s; %d runs per figure (median; strata and peers alternate within each run); suite time %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), machine(), in.Runs, in.Elapsed.Round(time.Second))
	fmt.Fprintf(b, "strata: `%s`. Peers: %s.\n\n", in.Strata, peerVersions())
	if d := in.Data; d != nil {
		fmt.Fprintf(b, "Data: base layer = Debian %s minbase from debootstrap (%d entries, %s of files); "+
			"toolchain layer = the Go tree %s (%d entries, %s); changes layer = %d whiteouts, a whiteout of a directory, an opaque directory, a 4 MiB file with 10 hard links. "+
			"gc and fsck run on a layout of %d images sharing those layers plus unreferenced images and blobs.\n\n",
			debmirror.HostSuite(), d.BaseFiles, fmtBytes(d.BaseBytes), runtime.Version(), d.GoFiles, fmtBytes(d.GoBytes), len(d.Plan.Deleted), manyImages)
	}
}

// reportBuilder holds the report's table as it is written and what goes
// below it: target rows, failures, profiles and strata's peak RSS.
type reportBuilder struct {
	in                 *reportInput
	b                  strings.Builder
	targets            []string
	profiles, failures []string
	profiled           map[*result]bool
	rssOK              bool
	rssMax             int64
	rssWho             string
}

// workload writes the table rows of rep and notes its targets.
func (rb *reportBuilder) workload(rep workloadReport) {
	var base *result
	for _, r := range rep.Results {
		if r.Side.Role == roleStrata && r.ok() {
			base = r
			break
		}
	}
	for _, r := range rep.Results {
		rb.row(rep, r, base)
	}
	for _, t := range rep.WL.Targets {
		line, missed, sr := judge(rep, t)
		rb.targets = append(rb.targets, line)
		if missed && sr != nil && sr.Profile != "" && rb.in.Profiles && !rb.profiled[sr] {
			rb.profiled[sr] = true
			rb.profiles = append(rb.profiles, profileSummary(rb.in.Bin, rep.WL.id()+" "+t.Strata, sr))
		}
	}
}

// row writes the table row of r, a side of rep, timed against base
// (strata's result; nil when strata did not run).
func (rb *reportBuilder) row(rep workloadReport, r, base *result) {
	label := mdEscape(r.Side.Label)
	if r.Side.Role == roleLimit {
		label = "_" + label + "_"
	}
	switch {
	case r.NotRun != "":
		fmt.Fprintf(&rb.b, "| %s | %s | %s | %s | | | |\n", rep.WL.Name, rep.WL.Kind, label, r.NotRun)
		return
	case r.Failed != "":
		rb.failures = append(rb.failures, fmt.Sprintf("- %s, %s: %s\n", rep.WL.id(), r.Side.Label, r.Failed))
		fmt.Fprintf(&rb.b, "| %s | %s | %s | failed (see below) | | | |\n", rep.WL.Name, rep.WL.Kind, label)
		return
	}
	ratio := ""
	if base != nil {
		ratio = fmt.Sprintf("%.2f", float64(r.median())/float64(base.median()))
	}
	med := fmtDuration(r.median())
	if len(r.Samples) < rb.in.Runs {
		med += fmt.Sprintf(" (%d run%s)", len(r.Samples), plural(len(r.Samples)))
	}
	fmt.Fprintf(&rb.b, "| %s | %s | %s | %s | %s | %s | %s |\n", rep.WL.Name, rep.WL.Kind, label,
		med, ratio, fmtBytes(r.peakRSS()), fmtDuration(r.medianCPU()))
	if r.Side.Role == roleStrata {
		if rss := r.peakRSS(); rss > rb.rssMax {
			rb.rssMax, rb.rssWho = rss, rep.WL.id()+" "+r.Side.Label
		}
		if r.peakRSS() >= rssLimit {
			rb.rssOK = false
		}
	}
}

// judge renders one target row: the measured ratio of peer to strata
// against the minimum the issue asks for.
func judge(rep workloadReport, t target) (line string, missed bool, strata *result) {
	var s, p *result
	for _, r := range rep.Results {
		switch r.Side.Label {
		case t.Strata:
			s = r
		case t.Peer:
			p = r
		}
	}
	if t.Peer == "" {
		return judgeWithin(rep, t, s)
	}
	what := fmt.Sprintf("%s ≥ %s × faster than %s", t.Strata, fmtRatio(t.MinRatio), t.Peer)
	if t.MinRatio < 1 {
		what = fmt.Sprintf("%s within %s × of %s", t.Strata, fmtRatio(1/t.MinRatio), t.Peer)
	} else if t.MinRatio == 1 {
		what = fmt.Sprintf("%s faster than %s", t.Strata, t.Peer)
	}
	what = mdEscape(what)
	id := rep.WL.id()
	if s == nil || p == nil || !s.ok() || !p.ok() {
		why := "not measured"
		switch {
		case s == nil || p == nil:
		case s.NotRun != "":
			why = s.NotRun
		case s.Failed != "":
			why = "strata failed"
		case p.NotRun != "":
			why = p.NotRun
		case p.Failed != "":
			why = "peer failed"
		}
		return fmt.Sprintf("| %s | %s | – | %s |\n", id, what, why), false, nil
	}
	ratio := float64(p.median()) / float64(s.median())
	status := "met"
	if ratio < t.MinRatio {
		status, missed = "**missed**", true
	}
	return fmt.Sprintf("| %s | %s | %.2f × | %s |\n", id, what, ratio, status), missed, s
}

// judgeWithin renders a target of time: strata's median at most
// t.Within.
func judgeWithin(rep workloadReport, t target, s *result) (line string, missed bool, strata *result) {
	what := mdEscape(fmt.Sprintf("%s under %s", t.Strata, fmtDuration(t.Within)))
	id := rep.WL.id()
	if s == nil || !s.ok() {
		why := "not measured"
		if s != nil && s.NotRun != "" {
			why = s.NotRun
		} else if s != nil && s.Failed != "" {
			why = "strata failed"
		}
		return fmt.Sprintf("| %s | %s | – | %s |\n", id, what, why), false, nil
	}
	status := "met"
	if s.median() > t.Within {
		status, missed = "**missed**", true
	}
	return fmt.Sprintf("| %s | %s | %s | %s |\n", id, what, fmtDuration(s.median()), status), missed, s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func fmtRatio(r float64) string {
	if r == float64(int(r)) {
		return fmt.Sprintf("%d", int(r))
	}
	return fmt.Sprintf("%.1f", r)
}

// profileSummary is the top of `go tool pprof -top` for the first
// profiled run of r, with its CPU time against its wall time: a CPU
// profile does not show time spent waiting for the disk.
func profileSummary(bin, title string, r *result) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=15", bin, r.Profile).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		text = fmt.Sprintf("go tool pprof failed: %v\n%s", err, text)
	}
	wall, cpu := r.median(), r.medianCPU()
	off := ""
	if wall > 0 {
		why := "CPU-bound on one core"
		switch {
		case cpu > wall*11/10:
			why = "CPU-bound on more than one core"
		case cpu < wall*9/10:
			why = "for the rest of the time strata waited: for the disk, fsync, or a busy machine"
		}
		off = fmt.Sprintf("Median wall time %s, CPU time %s: %.0f%% of one core; %s.\n\n",
			fmtDuration(wall), fmtDuration(cpu), 100*float64(cpu)/float64(wall), why)
	}
	return fmt.Sprintf("#### %s\n\n%s`%s`\n\n```\n%s\n```\n\n", title, off, r.Profile, text)
}

// mdEscape keeps a pipe in a label from ending a table cell.
func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// machine describes the hardware and kernel the figures come from.
func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "unknown kernel"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = "Linux " + strings.TrimSpace(string(b))
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/1e6)
		}
	}
	return fmt.Sprintf("%s, %d cores%s, %s", cpu, runtime.NumCPU(), mem, kernel)
}

// peerVersions names the version of every peer tool found.
func peerVersions() string {
	var out []string
	for _, t := range []struct{ name, arg string }{
		{"umoci", "--version"}, {"skopeo", "--version"}, {"crane", "version"},
		{"oci-image-tool", "--version"}, {"gzip", "--version"}, {"zstd", "--version"}, {"pigz", "--version"}, {"tar", "--version"},
	} {
		b, err := exec.Command(t.name, t.arg).CombinedOutput()
		if err != nil {
			out = append(out, t.name+" (not installed)")
			continue
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		out = append(out, strings.TrimSpace(line))
	}
	return strings.Join(out, ", ")
}
