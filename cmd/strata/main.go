// Command strata builds, stores, converts and ships OCI images on local
// disk, with no daemon. Each subcommand lives in its own file and registers
// itself on rootCmd in an init function; the work is done by the library
// packages, the command only turns flags into a call and a result into
// output.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/term"
)

// Set by the linker (see Makefile).
var (
	version = "dev"
	commit  = ""
)

// Global flags.
var (
	flagDebug bool
	flagQuiet bool
	flagRoot  string
)

var rootCmd = &cobra.Command{
	Use:   "strata",
	Short: "Build, store, convert and ship OCI images on local disk, with no daemon",
	Long: `strata keeps images in OCI image-layout directories (readable by skopeo,
umoci and crane), imports rootfs tarballs, unpacks images into runnable
bundles, commits changed root filesystems as new layers and writes archives
that docker load and podman load accept.

References are written LAYOUT:REF, as skopeo's oci: transport writes them:
REF is a tag (v1), a full name (docker.io/library/debian:12) or a digest
(@sha256:...). With no REF, a layout's only image is meant.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.PersistentFlags().BoolVar(&flagDebug, "debug", false, "print error details and debugging output")
	rootCmd.PersistentFlags().BoolVarP(&flagQuiet, "quiet", "q", false, "print no progress")
	rootCmd.PersistentFlags().StringVar(&flagRoot, "root", "", "snapshot store `DIR` of unpack, commit, mount, umount and snapshots (default /var/lib/strata, or $XDG_DATA_HOME/strata when not root)")
	rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
}

// usageError marks an error as the user's misuse of the command line; it
// exits with status 2.
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// usagef returns a usage error.
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %d argument(s), got %d (usage: %s)", c.CommandPath(), n, len(args), c.UseLine())
		}
		return nil
	}
}

// minArgs is cobra.MinimumNArgs with a usage error.
func minArgs(n int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("%s takes at least %d argument(s), got %d (usage: %s)", c.CommandPath(), n, len(args), c.UseLine())
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with a usage error.
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usagef("%s takes %d to %d arguments, got %d (usage: %s)", c.CommandPath(), min, max, len(args), c.UseLine())
		}
		return nil
	}
}

// stderrIsTerminal decides whether progress bars are drawn.
func stderrIsTerminal() bool { return term.IsTerminal(int(os.Stderr.Fd())) }

// showProgress says whether long operations draw progress bars.
func showProgress() bool { return !flagQuiet && stderrIsTerminal() }

// infof prints a status line on stderr unless --quiet.
func infof(format string, a ...any) {
	if !flagQuiet {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

// debugf prints on stderr with --debug.
func debugf(format string, a ...any) {
	if flagDebug {
		fmt.Fprintf(os.Stderr, "debug: "+format+"\n", a...)
	}
}

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	runAtExit() // profile.go: flush profiles, which os.Exit would skip
	os.Exit(code)
}

func run(args []string, stdout, stderr io.Writer) int {
	// run may be called more than once in a process (the command tests
	// do): flags set by an earlier call must not leak into this one.
	resetFlags(rootCmd)
	rootCmd.SetArgs(args)
	rootCmd.SetOut(stdout)
	rootCmd.SetErr(stderr)
	err := rootCmd.Execute()
	if err == nil {
		return 0
	}
	var u usageError
	isUsage := errors.As(err, &u)
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag",
		"required flag", "invalid argument", "flag needs an argument", "if any flags in the group"} {
		isUsage = isUsage || strings.HasPrefix(err.Error(), p)
	}
	msg := err.Error()
	if !flagDebug {
		// One line: the first line of the message.
		msg, _, _ = strings.Cut(msg, "\n")
	} else {
		for i, e := 0, err; e != nil; i, e = i+1, errors.Unwrap(e) {
			fmt.Fprintf(stderr, "debug: error chain %d: %T: %v\n", i, e, e)
		}
	}
	fmt.Fprintf(stderr, "strata: %s%s\n", msg, hint(err))
	if isUsage {
		return 2
	}
	return 1
}

// resetFlags puts every flag of c and its subcommands back to its default.
func resetFlags(c *cobra.Command) {
	reset := func(f *pflag.Flag) {
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			var def []string
			if d := strings.Trim(f.DefValue, "[]"); d != "" {
				def = strings.Split(d, ",")
			}
			_ = sv.Replace(def)
		} else {
			_ = f.Value.Set(f.DefValue)
		}
		f.Changed = false
	}
	c.Flags().VisitAll(reset)
	c.PersistentFlags().VisitAll(reset)
	for _, sub := range c.Commands() {
		resetFlags(sub)
	}
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
