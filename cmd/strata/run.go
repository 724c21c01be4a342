package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	srun "github.com/strata-oci/strata/snapshot/run"
	"golang.org/x/sys/unix"
)

// runFlags are strata run's flags.
type runFlags struct {
	env, envFiles, mounts, volumes, tmpfs []string

	workdir, user, network, runtime, driver, platform, hostname, name, entrypoint string

	rm, keep, replace, tty, interactive bool
}

func newRunCmd(g *globalFlags) *cobra.Command {
	f := &runFlags{}
	c := &cobra.Command{
		Use:   "run [flags] LAYOUT:REF|DIR [--] [CMD [ARG...]]",
		Short: "Run a command in a container of an image or an unpacked bundle",
		Long: `Run a command in a container, as docker run and podman run do, through an
OCI runtime (crun, else runc, from PATH; --runtime PATH), with no daemon.
strata exits with the command's status (128+N when signal N ended it).

From an image (LAYOUT:REF), strata unpacks a throwaway bundle into the
snapshot store (--driver overlay by default, vfs where overlay does not
work) and removes it afterwards. --keep keeps it, and --name NAME keeps it
as ROOT/bundles/NAME (an existing NAME is refused unless --replace). CMD
replaces the image's Cmd, after its Entrypoint (--entrypoint replaces
that).

From a bundle DIR (DIR/config.json and DIR/rootfs, as strata unpack or a
kept run leaves it), the bundle is run as it is, its changes kept; CMD
replaces config.json's process arguments. config.json itself is never
changed.

The container shares the host's network (--network host, the default) or
has a loopback interface alone (--network none). It gets its own
/etc/hostname, /etc/hosts and the host's /etc/resolv.conf, mounted over
the image's files without changing them. Ctrl-C and other signals are
passed to the command; one that the command does not handle, which the
kernel would drop for a container's PID 1 (a shell, sleep), ends it.

As an unprivileged user strata runs the container inside its own user
namespace (its /etc/subuid and /etc/subgid ranges mapped; the image's
users keep their IDs), where an overlay rootfs is mounted, and the
runtime keeps its state under the user's store.`,
		Example: `  strata run ./img:v1
  strata run --rm -e MODE=test -w /src -v "$PWD":/src:ro ./img:v1 -- make test
  strata run -it --network none ./img:debian bash
  strata run --name dev ./img:v1 -- sh -c 'echo hi > /greeting'
  strata run /var/lib/strata/bundles/dev cat /greeting
  strata unpack ./img:v1 ./bundle && strata run --runtime runc ./bundle id`,
		Args:              minArgs(1),
		ValidArgsFunction: completeFirstRef,
		RunE: func(c *cobra.Command, args []string) error {
			return runError(g.runRun(c, f, args))
		},
	}
	fl := c.Flags()
	// What follows the image or bundle is the command's.
	fl.SetInterspersed(false)
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set `KEY=VALUE` in the container (KEY alone: its value here, if set); repeatable")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read KEY=VALUE lines from `FILE`; repeatable")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working `DIR` in the container (made when missing)")
	fl.StringVarP(&f.user, "user", "u", "", "run as `USER[:GROUP]` (names or IDs of the image's /etc/passwd and /etc/group)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint with `CMD` (\"\" clears it)")
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount `SPEC`: type=bind,src=HOSTPATH,dst=PATH[,ro] or type=tmpfs,dst=PATH[,tmpfs-size=N][,tmpfs-mode=M]; repeatable")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount `HOSTPATH:PATH[:ro|rw]`; repeatable")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs at `PATH[:OPTIONS]`; repeatable")
	fl.StringVar(&f.network, "network", srun.NetworkHost, "`host` (share the host's network) or none (loopback only)")
	fl.StringVar(&f.network, "net", srun.NetworkHost, "alias of --network")
	_ = fl.MarkHidden("net")
	fl.StringVar(&f.hostname, "hostname", "", "the container's host `NAME`")
	fl.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal of its own (when stdin is a terminal)")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "pass stdin to the command")
	fl.BoolVar(&f.rm, "rm", true, "remove the bundle an image run makes when the command ends (a DIR is never removed)")
	fl.BoolVar(&f.keep, "keep", false, "keep the bundle an image run makes, and print where it is")
	fl.StringVar(&f.name, "name", "", "keep the bundle as `NAME` in the store's bundles directory")
	fl.BoolVar(&f.replace, "replace", false, "with --name, replace a bundle of that name")
	fl.StringVar(&f.runtime, "runtime", "", "OCI runtime `PATH` or name (default: crun, else runc, from PATH)")
	fl.StringVar(&f.driver, "driver", "", "snapshot driver of an image run: `overlay` (default, vfs where it does not work) or vfs")
	fl.StringVar(&f.platform, "platform", "", "image platform `os/arch[/variant]` of an index (default: this machine's)")
	return c
}

// nameRE is what a bundle name may be, as docker names containers.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// bundlesDir holds the bundles strata run keeps, in the store.
const bundlesDir = "bundles"

// runStatus ends strata with the command's exit status, printing
// nothing.
type runStatus int

func (s runStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// runFailed is an error of strata run itself, which exits 125 as docker
// run does (126 and 127 for a command that cannot be run), so that it
// differs from the command's own statuses.
type runFailed struct{ error }

func (e runFailed) Unwrap() error { return e.error }

// ExitCode is strata's exit status for it.
func (e runFailed) ExitCode() int {
	switch {
	case errors.Is(e.error, srun.ErrCommandNotFound):
		return 127
	case errors.Is(e.error, srun.ErrNotExecutable):
		return 126
	}
	return 125
}

// runError makes a failure of strata run (not a usage error, nor the
// command's own status) exit 125 (runFailed).
func runError(err error) error {
	var status runStatus
	if err == nil || errors.As(err, new(usageError)) || errors.As(err, &status) {
		return err
	}
	return runFailed{err}
}

func (g *globalFlags) runRun(c *cobra.Command, f *runFlags, args []string) error {
	target, cmdArgs := args[0], args[1:]
	if len(cmdArgs) > 0 && cmdArgs[0] == "--" {
		cmdArgs = cmdArgs[1:]
	}
	o, err := f.options(c)
	if err != nil {
		return err
	}
	isDir := isBundleDir(target)
	if err := f.check(target, isDir); err != nil {
		return err
	}
	// What can fail before the image is unpacked fails first.
	if o.Runtime, err = srun.LookRuntime(f.runtime); err != nil {
		return err
	}
	for _, m := range o.Mounts {
		if m.Type == srun.MountBind {
			if _, err := os.Stat(m.Source); err != nil {
				return fmt.Errorf("run: bind mount source: %w", err)
			}
		}
	}
	if userns.Needed() {
		// The container runs in strata's user namespace, where the
		// image's owners are real and an overlay rootfs is mounted;
		// where none can be made, a vfs bundle runs rootless outside.
		if err := g.reexecInUserns(true); err != nil {
			return err
		}
	}
	root, err := g.storeRoot()
	if err != nil {
		return err
	}
	o.StateDir = filepath.Join(root, "run")
	o.Store = storeOptions()
	ctx := c.Context()

	dir := target
	var done func() error
	if isDir {
		if rec, err := bundle.ReadRecord(target); err == nil {
			if err := g.checkBundleRoot(rec, target); err != nil {
				return err
			}
		}
		if f.entrypoint != "" || c.Flags().Changed("entrypoint") {
			o.Args = append(entrypointArgs(f.entrypoint), cmdArgs...)
		} else {
			o.Args = cmdArgs
		}
	} else {
		dir, done, err = g.runBundle(ctx, c, f, target, cmdArgs, &o)
		if err != nil {
			return err
		}
	}

	return execRun(ctx, dir, o, done)
}

// check refuses flag combinations that cannot work, before any work.
func (f *runFlags) check(target string, isDir bool) error {
	if isDir && (f.name != "" || f.keep || f.replace || f.driver != "" || f.platform != "") {
		return usagef("run: --name, --keep, --replace, --driver and --platform are for runs of an image; %s is a bundle directory", target)
	}
	if f.name != "" && !nameRE.MatchString(f.name) {
		return usagef("run: --name %q: a name is letters, digits, '_', '.' and '-', starting with a letter or digit", f.name)
	}
	if f.replace && f.name == "" {
		return usagef("run: --replace replaces a bundle named by --name")
	}
	if f.driver != "" {
		if err := bundle.CheckDriver(f.driver); err != nil {
			return usagef("run: --driver: %v", err)
		}
	}
	return nil
}

// execRun runs the container in dir, with the signals strata gets sent on
// to it, then calls done (when set) to remove a throwaway bundle.
func execRun(ctx context.Context, dir string, o srun.Options, done func() error) error {
	// Signals go to the container from now on: the run is not cancelled
	// by them (the root context is), but ended by the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigs)
	o.Signals = sigs
	if err := ctx.Err(); err != nil {
		// Interrupted before signals went to the container: not run.
		if done != nil {
			_ = done()
		}
		return err
	}
	code, runErr := srun.Run(context.WithoutCancel(ctx), dir, o)
	if done != nil {
		if err := done(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return runErr
	}
	if code != 0 {
		return runStatus(code)
	}
	return nil
}

// runBundle unpacks the image of an image run into its bundle and sets
// the command; done removes a throwaway bundle, or unmounts a kept one.
func (g *globalFlags) runBundle(ctx context.Context, c *cobra.Command, f *runFlags, target string, cmdArgs []string, o *srun.Options) (string, func() error, error) {
	l, ref, err := openLayoutRef(target)
	if err != nil {
		return "", nil, err
	}
	defer l.Close()
	var uo bundle.UnpackOptions
	if f.platform != "" {
		p, err := layout.ParsePlatform(f.platform)
		if err != nil {
			return "", nil, usageError{err}
		}
		uo.Platform = &p
	}
	img, err := l.Image(ref, uo.Platform)
	if err != nil {
		return "", nil, err
	}
	o.Args = imageArgs(img.Config.Config, f.entrypoint, c.Flags().Changed("entrypoint"), cmdArgs)
	if len(o.Args) == 0 {
		return "", nil, usagef("run: image %s has no Entrypoint or Cmd: give a command (strata run %s -- CMD)", target, target)
	}
	switch {
	case f.driver != "":
		uo.Driver = overlayDisabled(f.driver)
		uo.OnFallback = overlayFallback
	case os.Getenv(overlayEnv) == "off":
		uo.Driver = bundle.DefaultDriver
	default:
		uo.Driver = overlay.Name
		uo.OnFallback = func(reason error) { g.debugf("%v; using the vfs driver", reason) }
	}
	s, err := g.openStore()
	if err != nil {
		return "", nil, err
	}
	defer s.Close()
	keep := f.keep || (f.name != "" && !c.Flags().Changed("rm")) || (c.Flags().Changed("rm") && !f.rm)
	if !keep {
		b, err := srun.UnpackTemp(ctx, s, l, ref, o.StateDir, uo)
		if err != nil {
			return "", nil, err
		}
		g.debugf("unpacked %s into %s", target, b.Dir)
		return b.Dir, b.Remove, nil
	}
	name := f.name
	if name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		name = "run-" + hex.EncodeToString(b[:])
	}
	dir := filepath.Join(s.Root(), bundlesDir, name)
	if _, err := os.Lstat(dir); err == nil {
		if !f.replace {
			return "", nil, fmt.Errorf("run: bundle %s exists (%s): %w", name, dir, errBundleExists)
		}
		if err := bundle.Delete(dir, s.Options()); err != nil {
			return "", nil, err
		}
	}
	rec, err := bundle.Unpack(ctx, s, l, ref, dir, uo)
	if err != nil {
		return "", nil, err
	}
	g.infof("bundle %s kept in %s (strata run %s [CMD] runs it again)", name, rec.Dir, rec.Dir)
	opts := s.Options()
	return rec.Dir, func() error { return unmountKept(rec.Dir, opts) }, nil
}

// errBundleExists means --name names a bundle that exists.
var errBundleExists = errors.New("a bundle of that name exists")

// unmountKept unmounts the overlay rootfs of a kept bundle after its
// run: the next run of the bundle mounts it again.
func unmountKept(dir string, o snapshot.StoreOptions) error {
	b, err := bundle.Open(dir, o)
	if err != nil {
		return err
	}
	defer b.Close()
	err = b.Unmount()
	if errors.Is(err, snapshot.ErrNoMount) || errors.Is(err, overlay.ErrNotMounted) || errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// imageArgs is the command line of an image run, as docker run builds
// it: the entrypoint (the image's, or --entrypoint's, which also drops
// the image's Cmd), then the given command or else the image's Cmd.
func imageArgs(cfg ocispec.ImageConfig, entrypoint string, entrypointSet bool, cmd []string) []string {
	ep, def := cfg.Entrypoint, cfg.Cmd
	if entrypointSet {
		ep, def = entrypointArgs(entrypoint), nil
	}
	if len(cmd) == 0 {
		cmd = def
	}
	return append(append([]string{}, ep...), cmd...)
}

// entrypointArgs is --entrypoint as a command line: one program, or none
// for "".
func entrypointArgs(e string) []string {
	if e == "" {
		return nil
	}
	return []string{e}
}

// isBundleDir says whether arg is a bundle directory (it holds a
// config.json), not a layout reference.
func isBundleDir(arg string) bool {
	fi, err := os.Stat(filepath.Join(arg, bundle.SpecFile))
	return err == nil && fi.Mode().IsRegular()
}
