package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globalFlags are the flags every command takes. run makes a new one for
// each command line, and the command constructors close over it.
type globalFlags struct {
	debug bool
	quiet bool
	root  string

	// Hidden: profiles of the run (profile.go).
	cpuProfile string
	memProfile string
}

// newRootCmd builds the strata command with every subcommand, bound to g.
func newRootCmd(g *globalFlags) *cobra.Command {
	root := &cobra.Command{
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
		PersistentPreRun: func(*cobra.Command, []string) {
			startProfiles(g.cpuProfile, g.memProfile)
		},
	}
	pf := root.PersistentFlags()
	pf.BoolVar(&g.debug, "debug", false, "print error details and debugging output")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print no progress")
	pf.StringVar(&g.root, "root", "", "snapshot store `DIR` of unpack, commit, mount, umount and snapshots (default /var/lib/strata, or $XDG_DATA_HOME/strata when not root)")
	pf.StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile to `FILE`")
	pf.StringVar(&g.memProfile, "memprofile", "", "write a heap profile to `FILE` at exit")
	_ = pf.MarkHidden("cpuprofile")
	_ = pf.MarkHidden("memprofile")
	// Every flag cobra cannot parse, on any command, is a usage error.
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(
		newAppendCmd(g),
		newAttachCmd(g),
		newBuildCmd(g),
		newCommitCmd(g),
		newCompletionCmd(),
		newCopyCmd(g),
		newDemoCmd(),
		newDiffCmd(g),
		newExportCmd(g),
		newFlattenCmd(g),
		newFsckCmd(g),
		newGCCmd(g),
		newImportCmd(g),
		newIndexCmd(g),
		newInitCmd(g),
		newInspectCmd(),
		newInventoryCmd(g),
		newLoadCmd(g),
		newLoginCmd(g),
		newLogoutCmd(g),
		newLsCmd(),
		newMountCmd(g),
		newMutateCmd(g),
		newPullCmd(g),
		newPushCmd(g),
		newRebaseCmd(g),
		newReferrersCmd(),
		newRmCmd(g),
		newRunCmd(g),
		newSaveCmd(g),
		newSnapshotsCmd(g),
		newSyncCmd(g),
		newTagCmd(g),
		newUmountCmd(g),
		newUnpackCmd(g),
		newUnshareCmd(g),
		newVersionCmd(),
	)
	return root
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
func (g *globalFlags) showProgress() bool { return !g.quiet && stderrIsTerminal() }

// infof prints a status line on stderr unless --quiet.
func (g *globalFlags) infof(format string, a ...any) {
	if !g.quiet {
		fmt.Fprintf(os.Stderr, format+"\n", a...)
	}
}

// debugf prints on stderr with --debug.
func (g *globalFlags) debugf(format string, a ...any) {
	if g.debug {
		fmt.Fprintf(os.Stderr, "debug: "+format+"\n", a...)
	}
}
