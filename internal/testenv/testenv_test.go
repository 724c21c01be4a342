package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a requirement ended it.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}

// Skipf and Fatalf end the goroutine as the real ones do, so that nothing
// after them runs.
func (r *recorder) Skipf(format string, a ...any) {
	r.skipped = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, a ...any) {
	r.failed = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// outcome runs f on a recorder in a goroutine of its own.
func outcome(t *testing.T, f func(tb testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestStrict(t *testing.T) {
	for v, want := range map[string]bool{"": false, "0": false, "1": true, "yes": true} {
		t.Setenv(StrictEnv, v)
		if got := Strict(); got != want {
			t.Errorf("%s=%q: Strict() = %v", StrictEnv, v, got)
		}
	}
}

func TestMissingSkipsOrFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	const tool = "strata-no-such-tool"
	t.Setenv(StrictEnv, "")
	r := outcome(t, func(tb testing.TB) { RequireTool(tb, tool) })
	if r.failed != "" || !strings.Contains(r.skipped, tool) || !strings.Contains(r.skipped, StrictEnv) {
		t.Errorf("without the switch: skipped %q, failed %q", r.skipped, r.failed)
	}
	t.Setenv(StrictEnv, "1")
	r = outcome(t, func(tb testing.TB) { RequireTool(tb, tool) })
	if r.skipped != "" || !strings.Contains(r.failed, tool) {
		t.Errorf("with the switch: skipped %q, failed %q", r.skipped, r.failed)
	}
	r = outcome(t, func(tb testing.TB) { RequireFile(tb, "/nonexistent/strata", "a test file") })
	if !strings.Contains(r.failed, "a test file") {
		t.Errorf("RequireFile with the switch: failed %q", r.failed)
	}
	r = outcome(t, func(tb testing.TB) { RequireRoot(tb, "it mounts") })
	if os.Geteuid() == 0 && (r.failed != "" || r.skipped != "") {
		t.Errorf("RequireRoot as root: skipped %q, failed %q", r.skipped, r.failed)
	}
	if os.Geteuid() != 0 && !strings.Contains(r.failed, "root (it mounts)") {
		t.Errorf("RequireRoot as a user with the switch: failed %q", r.failed)
	}
}

func TestRequireToolFinds(t *testing.T) {
	t.Setenv(StrictEnv, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, name := filepath.Split(exe)
	t.Setenv("PATH", dir)
	if got := RequireTool(t, name); got != exe {
		t.Fatalf("RequireTool(%s) = %q, want %q", name, got, exe)
	}
}
