package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"golang.org/x/sys/unix"
)

// RootfsEnv is set, for a command strata mount runs, to the mounted
// rootfs.
const RootfsEnv = "STRATA_ROOTFS"

func newMountCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "mount DIR [-- CMD [ARG...]]",
		Short: "Mount the overlay rootfs of a bundle unpacked with --driver overlay",
		Long: `Mount DIR/rootfs, the overlay of the image's layers and the bundle's own
upper directory (DIR/.strata/upper), as strata unpack --driver overlay left
it: after a reboot, or after strata umount. Changes made before are kept.
A rootfs that is mounted already is left as it is (exit status 0).

With CMD, strata mounts the rootfs (unless it is mounted already), runs CMD
with ` + RootfsEnv + ` set to the rootfs, unmounts and exits with CMD's status.

As an unprivileged user strata mounts inside its own user namespace, which
ends with strata: a mount is only useful with CMD, which runs inside that
namespace as its root.

A vfs bundle's rootfs is a plain directory: with CMD, strata runs it, inside
its user namespace when the rootfs has owners only that namespace maps.`,
		Example: `  strata mount ./bundle && runc run -b ./bundle ctr
  strata mount ./bundle -- sh -c 'ls "$` + RootfsEnv + `"/etc'`,
		Args: minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			dash := c.ArgsLenAtDash()
			if (dash == -1 && len(args) > 1) || dash > 1 {
				return usagef("mount takes one DIR, then optionally -- CMD [ARG...] (usage: %s)", c.UseLine())
			}
			var run []string
			if dash == 1 {
				run = args[1:]
				if len(run) == 0 {
					return usagef("mount: no command after --")
				}
			}
			return g.runMount(args[0], run)
		},
	}
	return c
}

// runMount mounts the rootfs of the bundle dir, or with run (a command
// line) runs it on the rootfs, mounted for it if need be.
func (g *globalFlags) runMount(dir string, run []string) error {
	rec, err := bundle.ReadRecord(dir)
	if err != nil {
		return err
	}
	if err := g.checkBundleRoot(rec, dir); err != nil {
		return err
	}
	if !bundle.DriverMounts(rec.Driver) && run != nil {
		// A plain rootfs needs no mount; the command runs where its
		// owners show.
		if bundleNeedsUserns(rec) {
			return g.reexecInUserns(false)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		return exitWith(runOnMount(run, filepath.Join(abs, snapshot.RootfsDir)))
	}
	if userns.Needed() {
		if run == nil {
			return usagef("mount: an unprivileged strata mounts inside its own user namespace, which ends when strata does: give a command to run on the mount (strata mount %s -- CMD)", dir)
		}
		return g.reexecInUserns(false)
	}
	b, err := bundle.Open(dir, storeOptions())
	if err != nil {
		return err
	}
	defer b.Close()
	if run == nil {
		// Mounting what is mounted already is done, not an error:
		// scripts may call mount twice.
		err := b.Mount()
		if errors.Is(err, overlay.ErrAlreadyMounted) {
			g.infof("%s is mounted already", b.Rootfs())
			return nil
		}
		if err != nil {
			return err
		}
		g.infof("mounted %s", b.Rootfs())
		return nil
	}
	return g.runOnBundle(b, run)
}

// runOnBundle runs a command on the rootfs of b, mounting it for the
// command unless it is mounted already, and exits with the command's
// status when that is not 0.
func (g *globalFlags) runOnBundle(b *bundle.Bundle, run []string) error {
	mounted, err := overlay.IsMounted(b.Rootfs())
	if err != nil {
		return err
	}
	if !mounted {
		if err := b.Mount(); err != nil {
			return err
		}
		g.debugf("mounted %s for %s", b.Rootfs(), run[0])
	}
	code, runErr := runOnMount(run, b.Rootfs())
	if !mounted {
		if err := b.Unmount(); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		b.Close()
		os.Exit(code)
	}
	return nil
}

// exitWith ends strata with the exit status code of a command it ran,
// unless that is 0 or err says the command did not run.
func exitWith(code int, err error) error {
	if err != nil {
		return err
	}
	if code != 0 {
		os.Exit(code)
	}
	return nil
}

// runOnMount runs a command with the rootfs in its environment and
// returns its exit status. Termination signals go to the command, so that
// strata outlives it and unmounts.
func runOnMount(run []string, rootfs string) (int, error) {
	return runCommand(run, RootfsEnv+"="+rootfs)
}

// runCommand runs a command with env added to strata's environment and
// returns its exit status, passing it termination signals.
func runCommand(run []string, env ...string) (int, error) {
	cmd := exec.Command(run[0], run[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("run %s: %w", run[0], err)
	}
	code, err := userns.Wait(cmd, sigs)
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", run[0], err)
	}
	return code, nil
}

// reexecInUserns runs this strata command again inside strata's own user
// and mount namespace and exits with its status. It returns an error
// when no namespace can be made; it returns nil in that case instead when
// the command can go on without one (unpack then falls back to vfs with a
// warning of its own).
func (g *globalFlags) reexecInUserns(canContinue bool) error {
	g.debugf("entering a user namespace to mount overlay")
	code, err := userns.Reexec(os.Args[1:])
	if err != nil {
		if canContinue && errors.Is(err, userns.ErrUnavailable) {
			fmt.Fprintf(os.Stderr, "strata: warning: %v\n", err)
			return nil
		}
		return err
	}
	os.Exit(code)
	return nil
}

// overlayNeedsUserns says whether a command using the given driver must
// re-execute in strata's user namespace: an unprivileged user asked for
// a driver that mounts (overlay). Commands call reexecInUserns when it is
// true (unpack with canContinue, as it can fall back to vfs).
func overlayNeedsUserns(driver string) bool {
	return bundle.DriverMounts(driver) && userns.Needed() && !overlayOff(driver)
}
