package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestUsageErrorsAreTyped: every way of misusing the command line exits
// 2 because its error is a usageError, whatever cobra's message says.
func TestUsageErrorsAreTyped(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unknown command", []string{"frobnicate"}, 2},
		{"unknown command after a global flag", []string{"--root", dir, "frobnicate"}, 2},
		{"unknown root flag", []string{"--bogus"}, 2},
		{"unknown shorthand", []string{"ls", "-z", dir}, 2},
		{"flag without its value", []string{"unpack", "--driver"}, 2},
		{"bad flag value", []string{"pull", "--jobs", "x", "a", "b"}, 2},
		{"argument to a command with subcommands", []string{"--root", dir, "snapshots", "frob"}, 2},
		{"unknown flag of a subcommand", []string{"snapshots", "gc", "--bogus"}, 2},
		{"too few arguments of a subcommand", []string{"snapshots", "rm"}, 2},
		{"no command", nil, 0},
		{"help", []string{"help"}, 0},
		{"help of a subcommand", []string{"snapshots", "gc", "--help"}, 0},
		{"unknown help topic", []string{"help", "frob"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := strataRun(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	var b bytes.Buffer
	if code := exitStatus(&b, nil, false); code != 0 || b.Len() != 0 {
		t.Fatalf("nil error: exit %d, printed %q", code, b.String())
	}
	if code := exitStatus(&b, errors.New("first\nsecond"), false); code != 1 || b.String() != "strata: first\n" {
		t.Fatalf("error: exit %d, printed %q", code, b.String())
	}
	b.Reset()
	if code := exitStatus(&b, usagef("bad %s", "flag"), false); code != 2 || b.String() != "strata: bad flag\n" {
		t.Fatalf("usage error: exit %d, printed %q", code, b.String())
	}
}

// TestRunsShareNothing: each run builds its own root command, so a flag
// given to one run is unset in the next.
func TestRunsShareNothing(t *testing.T) {
	f := newFixture(t)
	if out := mustStrata(t, "ls", "--json", f.dir); !strings.HasPrefix(out, "[") {
		t.Fatalf("ls --json printed %q", out)
	}
	if out := mustStrata(t, "ls", f.dir); !strings.HasPrefix(out, "NAME") {
		t.Fatalf("--json leaked into the next run: %q", out)
	}
	if out := mustStrata(t, "inspect", "--raw", "config", f.dir+":v1"); !strings.HasPrefix(out, "{") {
		t.Fatalf("inspect --raw config printed %q", out)
	}
	if out := mustStrata(t, "inspect", f.dir+":v1"); !strings.HasPrefix(out, "Name:") {
		t.Fatalf("--raw leaked into the next run: %q", out)
	}
	// Two roots are two sets of flags.
	g1, g2 := &globalFlags{}, &globalFlags{}
	r1, r2 := newRootCmd(g1), newRootCmd(g2)
	if err := r1.PersistentFlags().Set("root", "/a"); err != nil {
		t.Fatal(err)
	}
	if g1.root != "/a" || g2.root != "" || r2.PersistentFlags().Lookup("root").Value.String() != "" {
		t.Fatalf("roots share --root: %q, %q", g1.root, g2.root)
	}
}
