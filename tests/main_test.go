// Package tests holds end-to-end tests: they build the real strata binary
// and run it against real peers (skopeo, umoci, oci-image-tool, docker,
// podman, runc, a registry). A test that needs root or a tool asks for it
// with needRoot or needTool (internal/testenv): without it the test is
// skipped, or fails under `make test`, which installs every tool first.
package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"
)

// strataBin is the binary under test, built once by TestMain.
var strataBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "strata-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Readable by an unprivileged test user too.
	_ = os.Chmod(dir, 0o755)
	strataBin = filepath.Join(dir, "strata")
	_, self, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(self))
	build := exec.Command("go", "build", "-o", strataBin, "./cmd/strata")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build strata:", err)
		return 1
	}
	return m.Run()
}

// result is what a command printed and how it exited.
type result struct {
	Stdout, Stderr string
	Code           int
}

// runCmd runs name with args and returns its output and exit code; it fails
// the test only when the command cannot be started.
func runCmd(t testing.TB, stdin []byte, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run %s %s: %v", name, strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// strata runs the strata binary and fails the test unless it exits 0.
func strata(t testing.TB, args ...string) string {
	t.Helper()
	r := runCmd(t, nil, strataBin, append([]string{"--quiet"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("strata %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// strataFail runs the strata binary, expects a non-zero exit and returns
// the result.
func strataFail(t testing.TB, args ...string) result {
	t.Helper()
	r := runCmd(t, nil, strataBin, append([]string{"--quiet"}, args...)...)
	if r.Code == 0 {
		t.Fatalf("strata %s: succeeded, expected a failure\nstdout: %s", strings.Join(args, " "), r.Stdout)
	}
	return r
}

// mustRun runs a peer tool and fails the test unless it exits 0.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	needTool(t, name)
	r := runCmd(t, nil, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// needTool returns the path of a peer tool; without it the test is
// skipped, or fails under `make test` (testenv.StrictEnv).
func needTool(t testing.TB, name string) string {
	t.Helper()
	return testenv.RequireTool(t, name)
}

// needRoot skips the test unless it runs as root, or fails it under
// `make test`.
func needRoot(t testing.TB) {
	t.Helper()
	testenv.RequireRoot(t)
}
