// Command strata builds, stores, converts and ships OCI images on local
// disk, with no daemon. Each subcommand lives in its own file, built by
// its constructor (newUnpackCmd, ...); newRootCmd adds them all. The work
// is done by the library packages: a command only turns flags into a call
// and a result into output.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/layout"
)

// Set by the linker (see Makefile).
var (
	version = "dev"
	commit  = ""
)

func main() {
	// A strata re-executed into its own user namespace finishes entering
	// it here, before any command runs.
	userns.Init()
	// Profiles asked for in the environment start before flags are
	// parsed, so that nothing of the run is missed (profile.go).
	startProfiles(os.Getenv("STRATA_CPUPROFILE"), os.Getenv("STRATA_MEMPROFILE"))
	startTrace(os.Getenv("STRATA_TRACE"))
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	runAtExit() // profile.go: flush profiles, which os.Exit would skip
	os.Exit(code)
}

// run runs one command line on a root command of its own, so that nothing
// of one run (the tests make many in one process) leaks into the next,
// and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	g := &globalFlags{}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Ctrl-C and SIGTERM cancel the context every command gets from
	// cobra (c.Context()), so long operations stop and take back their work.
	ctx, cancel := signalContext()
	defer cancel()
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && cmd == root {
		// The root command runs nothing itself: cobra fails there only
		// on a command line that names no command (its flag errors are
		// usage errors already).
		err = usageError{err}
	}
	return exitStatus(stderr, err, g.debug)
}

// exitStatus prints err, if any, as strata's one-line error (with
// --debug, after the chain of wrapped errors) and returns the exit
// status: 0 for none, 2 for a usage error, 1 for any other.
func exitStatus(stderr io.Writer, err error, debug bool) int {
	if err == nil {
		return 0
	}
	var status runStatus
	if errors.As(err, &status) {
		// A command strata ran ended so; it said what it had to.
		return int(status)
	}
	msg := err.Error()
	if !debug {
		// One line: the first line of the message.
		msg, _, _ = strings.Cut(msg, "\n")
	} else {
		for i, e := 0, err; e != nil; i, e = i+1, errors.Unwrap(e) {
			fmt.Fprintf(stderr, "debug: error chain %d: %T: %v\n", i, e, e)
		}
	}
	fmt.Fprintf(stderr, "strata: %s%s\n", msg, hintFor(err))
	if errors.As(err, new(usageError)) {
		return 2
	}
	var coded interface{ ExitCode() int }
	if errors.As(err, &coded) {
		return coded.ExitCode()
	}
	return 1
}

// parseRefArg splits a LAYOUT[:REF] argument; a malformed REF is a usage
// error.
func parseRefArg(arg string) (dir, ref string, err error) {
	dir, ref, err = layout.SplitRef(arg)
	if err != nil {
		return "", "", usageError{err}
	}
	return dir, ref, nil
}

// openLayoutRef opens the layout of a LAYOUT[:REF] argument and returns
// the REF part. The caller closes the layout.
func openLayoutRef(arg string) (*layout.Layout, string, error) {
	dir, ref, err := parseRefArg(arg)
	if err != nil {
		return nil, "", err
	}
	l, err := layout.Open(dir)
	if err != nil {
		return nil, "", err
	}
	return l, ref, nil
}
