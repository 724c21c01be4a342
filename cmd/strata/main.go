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
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	rootCmd.SetArgs(args)
	rootCmd.SetOut(stdout)
	rootCmd.SetErr(stderr)
	err := rootCmd.Execute()
	if err == nil {
		return 0
	}
	var u usageError
	isUsage := errors.As(err, &u) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "unknown flag") || strings.HasPrefix(err.Error(), "unknown shorthand flag")
	msg := err.Error()
	if !flagDebug {
		// One line: the first line of the message.
		msg, _, _ = strings.Cut(msg, "\n")
	} else {
		fmt.Fprintf(stderr, "debug: error chain: %#v\n", err)
	}
	fmt.Fprintf(stderr, "strata: %s\n", msg)
	if isUsage {
		return 2
	}
	return 1
}
