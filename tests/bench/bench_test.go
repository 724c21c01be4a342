package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/internal/debmirror"
)

// TestMain lets the test binary act as the measuring launcher, as the
// bench binary does, so measure can be tested.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == launcherArg {
		os.Exit(launch(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func FuzzHelpAndOSRelease(f *testing.F) {
	f.Add("      --root DIR\n", "--root")
	f.Add("VERSION_CODENAME=x", "-o")
	f.Fuzz(func(t *testing.T, text, flag string) {
		if helpHasFlag(text, flag) && (flag == "" || !strings.Contains(text, flag)) {
			t.Fatalf("found %q in %q", flag, text)
		}
		if c := debmirror.Codename([]byte(text)); strings.ContainsAny(c, "\n") {
			t.Fatalf("codename %q spans lines", c)
		}
	})
}

func TestMedianDuration(t *testing.T) {
	for _, tc := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5}, 5},
		{[]time.Duration{9, 1, 5}, 5},
		{[]time.Duration{4, 1, 3, 2}, 2}, // (2+3)/2 in integer nanoseconds
		{[]time.Duration{10, 10, 100, 10, 1}, 10},
	} {
		if got := medianDuration(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHelpHasFlag(t *testing.T) {
	help := "Flags:\n      --compression string   gzip\n  -o, --output=FILE\n      --root\n      --driver-x string\n"
	for flag, want := range map[string]bool{
		"--compression": true, "--output": true, "--root": true, "--driver": false, "--comp": false, "--missing": false,
	} {
		if got := helpHasFlag(help, flag); got != want {
			t.Errorf("helpHasFlag(%s) = %v, want %v", flag, got, want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:           "/a/b",
		`/a\040b`:        "/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/bad\09`:        `/bad\09`,
		`/end\04`:        `/end\04`,
		`\`:              `\`,
	} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzUnescapeMount(f *testing.F) {
	f.Add(`/a\040b\`)
	f.Fuzz(func(t *testing.T, s string) {
		got := unescapeMount(s)
		if !strings.Contains(s, `\`) && got != s {
			t.Fatalf("changed %q without escapes to %q", s, got)
		}
		if len(got) > len(s) {
			t.Fatalf("unescaping %q grew it to %q", s, got)
		}
	})
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"strata unpack (overlay)": "strata-unpack-overlay",
		"gzip -dc | tar -x":       "gzip-dc-tar-x",
		"skopeo copy oci: oci:":   "skopeo-copy-oci-oci",
		"":                        "",
		"UPPER":                   "upper",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	var tb tailBuffer
	for i := 0; i < 1000; i++ {
		io.WriteString(&tb, "0123456789")
	}
	io.WriteString(&tb, "the end")
	s := tb.String()
	if len(s) != 4096 || !strings.HasSuffix(s, "the end") {
		t.Fatalf("tail is %d bytes ending %q", len(s), s[len(s)-10:])
	}
}

// TestMeasure checks the launcher: exit status, output in the error, and
// a peak RSS that is the command's own, not this test process's.
func TestMeasure(t *testing.T) {
	dir := t.TempDir()
	// This process holds 64 MiB while the command runs; the command, a
	// shell, far less, and that is what must be reported.
	big := make([]byte, 64<<20)
	for i := range big {
		big[i] = 1
	}
	s, err := measure([]string{"/bin/sh", "-c", "echo hello > out"}, os.Environ(), dir, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "hello\n" {
		t.Fatalf("command did not run in its directory: %q", b)
	}
	if s.Wall <= 0 || s.MaxRSS <= 0 {
		t.Fatalf("sample %+v lacks wall time or RSS", s)
	}
	if s.MaxRSS >= 32<<20 {
		t.Fatalf("a shell reported %d bytes of peak RSS: the parent's RSS leaked into it", s.MaxRSS)
	}
	_ = big[len(big)-1]
	_, err = measure([]string{"/bin/sh", "-c", "echo boom >&2; exit 3"}, os.Environ(), dir, time.Minute)
	if err == nil || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("failure not reported with its output and status: %v", err)
	}
	_, err = measure([]string{"/bin/sleep", "30"}, os.Environ(), dir, 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("timeout not reported: %v", err)
	}
}

// TestRunWorkload runs a tiny workload through the harness: rotation,
// medians, a missing command, a missing tool, a failing side, and a
// capped side.
func TestRunWorkload(t *testing.T) {
	var order []string
	mk := func(label string, r role, script string) side {
		return side{Label: label, Role: r, Argv: func(w *work) []string {
			order = append(order, label)
			return []string{"/bin/sh", "-c", script}
		}}
	}
	wl := &workload{Name: "t", Kind: "gzip", Sides: []side{
		mk("strata", roleStrata, "true"),
		mk("peer", rolePeer, "true"),
		mk("bad", rolePeer, "exit 1"),
		{Label: "absent", Role: rolePeer, Tools: []string{"no-such-tool-strata-bench"}, Argv: func(*work) []string { return []string{"x"} }},
		func() side { s := mk("capped", roleLimit, "true"); s.MaxRuns = 1; return s }(),
	}}
	r := &runner{Runs: 3, Scratch: t.TempDir(), Timeout: time.Minute, Logf: t.Logf, HasStrata: func(string) bool { return true }}
	res := r.runWorkload(wl)
	if n := len(res[0].Samples); n != 3 || !res[0].ok() {
		t.Fatalf("strata: %d samples, %+v", n, res[0])
	}
	if res[2].Failed == "" || len(res[2].Samples) != 0 {
		t.Fatalf("failing side: %+v", res[2])
	}
	if !strings.Contains(res[3].NotRun, "not installed") {
		t.Fatalf("missing tool: %+v", res[3])
	}
	if len(res[4].Samples) != 1 {
		t.Fatalf("capped side ran %d times", len(res[4].Samples))
	}
	// Run 2 starts with the second side.
	if len(order) < 5 || order[0] != "strata" || order[4] != "peer" {
		t.Fatalf("runs do not rotate: %v", order)
	}
	md := renderReport(&reportInput{Runs: 3, Reports: []workloadReport{{WL: wl, Results: res}}})
	for _, want := range []string{"| t | gzip | strata |", "failed (see below)", "### Failures", "n/a (no-such-tool-strata-bench not installed)", "(1 run)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}

	wl.Needs = []string{"frobnicate"}
	r.HasStrata = func(string) bool { return false }
	res = r.runWorkload(wl)
	if !strings.Contains(res[0].NotRun, "strata command missing: frobnicate") || res[1].NotRun == "" {
		t.Fatalf("missing command: %+v %+v", res[0], res[1])
	}
}

// TestChangesLayer checks the generated third layer: whiteouts for every
// planned deletion, the opaque marker, and hard links to a file earlier
// in the same layer.
func TestChangesLayer(t *testing.T) {
	root, goroot := t.TempDir(), t.TempDir()
	for _, p := range []string{"usr/share/doc/aaa/copyright", "usr/share/doc/bbb/changelog.gz", "usr/share/doc/ccc/README", "etc/hostname"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(goroot, "test"), 0o755); err != nil {
		t.Fatal(err)
	}
	plan, err := planChanges(root, goroot)
	if err != nil {
		t.Fatal(err)
	}
	if plan.DeletedDir != "usr/share/doc/aaa" || len(plan.Deleted) != 2 || plan.Opaque != "usr/local/go/test" {
		t.Fatalf("plan %+v", plan)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeChangesTar(tw, plan); err != nil {
		t.Fatal(err)
	}
	tw.Close()
	names := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if names[h.Name] != nil {
			t.Fatalf("entry %s twice", h.Name)
		}
		names[h.Name] = h
	}
	for _, want := range []string{"usr/share/doc/.wh.aaa", "usr/share/doc/bbb/.wh.changelog.gz", "usr/local/go/test/.wh..wh..opq", "opt/bench/data.bin", "etc/hostname", "usr/share/doc/"} {
		if names[want] == nil {
			t.Errorf("layer lacks %s", want)
		}
	}
	if h := names["opt/bench/link09.bin"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "opt/bench/data.bin" {
		t.Errorf("hard link entry wrong: %+v", h)
	}
}

// TestTreeTar checks that a directory tree round-trips: hard links become
// link entries, symlinks keep their targets, the prefix is applied.
func TestTreeTar(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o750))
	must(os.WriteFile(filepath.Join(root, "a/b/f"), []byte("data"), 0o600))
	must(os.Link(filepath.Join(root, "a/b/f"), filepath.Join(root, "a/g")))
	must(os.Symlink("b/f", filepath.Join(root, "a/s")))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(writeTreeTar(tw, root, "usr/local/x"))
	must(tw.Close())
	got := map[string]*tar.Header{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[h.Name] = h
	}
	if h := got["usr/local/x/a/b/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode&0o777 != 0o750 {
		t.Errorf("directory entry: %+v", h)
	}
	if h := got["usr/local/x/a/b/f"]; h == nil || h.Size != 4 {
		t.Errorf("file entry: %+v", h)
	}
	if h := got["usr/local/x/a/g"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "usr/local/x/a/b/f" {
		t.Errorf("hard link entry: %+v", h)
	}
	if h := got["usr/local/x/a/s"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "b/f" {
		t.Errorf("symlink entry: %+v", h)
	}
}

func TestParseOnly(t *testing.T) {
	set, err := parseOnly("import, unpack/zstd")
	if err != nil {
		t.Fatal(err)
	}
	if !set.match(&workload{Name: "import", Kind: "gzip"}) || !set.match(&workload{Name: "unpack", Kind: "zstd"}) ||
		set.match(&workload{Name: "unpack", Kind: "gzip"}) || set.match(&workload{Name: "gc", Kind: "gzip"}) {
		t.Fatalf("wrong selection %v", set)
	}
	if _, err := parseOnly("import,nope"); err == nil {
		t.Fatal("unknown workload accepted")
	}
	if set, _ := parseOnly(""); !set.match(&workload{Name: "gc"}) {
		t.Fatal("empty -only selects nothing")
	}
}

// TestToolsPresent fails when a peer the suite compares with is missing:
// CI must have them all (crane excepted: Debian does not package it).
func TestToolsPresent(t *testing.T) {
	for _, tool := range []string{"umoci", "skopeo", "oci-image-tool", "debootstrap", "pigz", "zstd", "gzip", "tar", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Errorf("%s is required by the benchmark suite and is not installed", tool)
		}
	}
}

// TestSettle: a suite waits out settleWait after a recorded removal, and
// not at all after an old one or none.
func TestSettle(t *testing.T) {
	dir := t.TempDir()
	logged := 0
	logf := func(string, ...any) { logged++ }
	settle(dir, logf) // no mark
	write := func(at time.Time) {
		if err := os.WriteFile(filepath.Join(dir, removedMark), []byte(at.UTC().Format(time.RFC3339)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(time.Now().Add(-2 * settleWait))
	settle(dir, logf)
	if logged != 0 {
		t.Fatalf("waited %d times with no recent removal", logged)
	}
	write(time.Now().Add(-settleWait + 2*time.Second))
	start := time.Now()
	settle(dir, logf)
	if logged != 1 || time.Since(start) < time.Second {
		t.Fatalf("after a recent removal: logged %d, waited %s", logged, time.Since(start))
	}
}
