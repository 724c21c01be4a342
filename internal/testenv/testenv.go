// Package testenv decides what a test does when the machine lacks
// something it needs: root, or a peer tool such as skopeo, umoci or runc.
//
// On a developer's machine the test is skipped with a message naming what
// is missing (go test -v ./... lists them). Under `make test`, which CI
// runs as root after installing every tool, the Makefile sets
// STRATA_TEST_STRICT=1 and the same test fails instead: CI never passes
// because a tool went missing.
//
// Every test that needs root or a tool asks through this package, so that
// the switch covers all of them.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// StrictEnv names the switch: set to 1 (or any value but 0 and the empty
// string), what a test needs and lacks fails it instead of skipping it.
const StrictEnv = "STRATA_TEST_STRICT"

// Strict says whether missing requirements fail tests.
func Strict() bool {
	v := os.Getenv(StrictEnv)
	return v != "" && v != "0"
}

// RequireRoot skips the test, or under the switch fails it, unless it
// runs as root. why says what the test does that needs root.
func RequireRoot(t testing.TB, why ...string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	what := "root"
	if len(why) > 0 {
		what += " (" + strings.Join(why, "; ") + ")"
	}
	Missing(t, what)
}

// GoToolsDir is where tests/setup.sh installs the peers it builds with
// go install (oras, crane, cosign); RequireTool looks there first.
const GoToolsDir = "/var/cache/strata-tests/gobin"

// RequireTool returns the path of the program name, and skips the test,
// or under the switch fails it, when it is neither in GoToolsDir nor in
// PATH.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	if p := filepath.Join(GoToolsDir, name); isExecutable(p) {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, fmt.Sprintf("the %s tool, which is neither in %s nor in PATH", name, GoToolsDir))
	}
	return p
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// RequireFile skips the test, or under the switch fails it, unless path
// exists; what names what the file is (a package installs it).
func RequireFile(t testing.TB, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, fmt.Sprintf("%s (%s: %v)", what, path, err))
	}
}

// Missing ends the test for lack of what: a skip, or under the switch a
// failure. Use it for requirements the functions above do not cover.
func Missing(t testing.TB, what string) {
	t.Helper()
	if Strict() {
		t.Fatalf("this test needs %s; %s is set, so that is a failure (make test-deps, as root, installs the tools)", what, StrictEnv)
	}
	t.Skipf("skipped: needs %s (with %s=1, as make test sets, this fails)", what, StrictEnv)
}
