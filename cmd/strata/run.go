package main

import (
	"bufio"
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
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	srun "github.com/strata-oci/strata/snapshot/run"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
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
			return g.runRun(c, f, args)
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
	fl.StringArrayVar(&f.mounts, "mount", nil, "mount `type=bind,src=HOSTPATH,dst=PATH[,ro]` or type=tmpfs,dst=PATH[,tmpfs-size=N][,tmpfs-mode=M]; repeatable")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount `HOSTPATH:PATH[:ro|rw]`; repeatable")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs at `PATH[:OPTIONS]`; repeatable")
	fl.StringVar(&f.network, "network", srun.NetworkHost, "`host` (share the host's network) or none (loopback only)")
	fl.StringVar(&f.network, "net", srun.NetworkHost, "alias of --network")
	_ = fl.MarkHidden("net")
	fl.StringVar(&f.hostname, "hostname", "", "the container's host `NAME`")
	fl.BoolVarP(&f.tty, "tty", "t", false, "run the command on a terminal of its own (when stdin is a terminal)")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "pass stdin to the command")
	fl.BoolVar(&f.rm, "rm", true, "remove the bundle an image run makes when the command ends (default; a DIR is never removed)")
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
	if isDir && (f.name != "" || f.keep || f.replace || f.driver != "" || f.platform != "") {
		return usagef("run: --name, --keep, --replace, --driver and --platform are for runs of an image; %s is a bundle directory", target)
	}
	if f.name != "" && !nameRE.MatchString(f.name) {
		return usagef("run: --name %q: a name is letters, digits, '_', '.' and '-', starting with a letter or digit", f.name)
	}
	if f.replace && f.name == "" {
		return usagef("run: --replace replaces a bundle named by --name")
	}
	if f.driver != "" && f.driver != "vfs" && f.driver != overlay.Name {
		return usagef("run: --driver %q: want overlay or vfs", f.driver)
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

	// Signals go to the container from now on: the run is not cancelled
	// by them (the root context is), but ended by the command.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2)
	defer signal.Stop(sigs)
	o.Signals = sigs
	code, runErr := srun.Run(context.WithoutCancel(ctx), dir, o)
	if done != nil {
		if err := done(); err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr != nil {
		return runFailed{runErr}
	}
	if code != 0 {
		return runStatus(code)
	}
	return nil
}

// options turns the flags that do not depend on the image into run
// options.
func (f *runFlags) options(c *cobra.Command) (srun.Options, error) {
	o := srun.Options{Runtime: f.runtime, Cwd: f.workdir, User: f.user, Hostname: f.hostname, Network: f.network}
	if f.network != srun.NetworkHost && f.network != srun.NetworkNone {
		return o, usagef("run: --network %q: want host or none", f.network)
	}
	if f.workdir != "" && !strings.HasPrefix(f.workdir, "/") {
		return o, usagef("run: --workdir %q: the container's working directory is an absolute path", f.workdir)
	}
	var err error
	for _, file := range f.envFiles {
		env, err := readEnvFile(file)
		if err != nil {
			return o, err
		}
		o.Env = append(o.Env, env...)
	}
	for _, e := range f.env {
		kv, ok, err := envValue(e)
		if err != nil {
			return o, usagef("run: --env %q: %v", e, err)
		}
		if ok {
			o.Env = append(o.Env, kv)
		}
	}
	for _, m := range f.mounts {
		rm, err := parseMount(m)
		if err != nil {
			return o, usagef("run: --mount %q: %v", m, err)
		}
		o.Mounts = append(o.Mounts, rm)
	}
	for _, v := range f.volumes {
		rm, err := parseVolume(v)
		if err != nil {
			return o, usagef("run: --volume %q: %v", v, err)
		}
		o.Mounts = append(o.Mounts, rm)
	}
	for _, t := range f.tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		m := srun.Mount{Type: srun.MountTmpfs, Destination: dst}
		if opts != "" {
			m.Options = strings.Split(opts, ",")
		}
		if !strings.HasPrefix(dst, "/") {
			return o, usagef("run: --tmpfs %q: the mount point is an absolute path", t)
		}
		o.Mounts = append(o.Mounts, m)
	}
	o.NetworkFiles = true
	if o.ResolvConf, err = os.ReadFile("/etc/resolv.conf"); err != nil {
		o.ResolvConf = nil
	}
	o.Stdout, o.Stderr = os.Stdout, os.Stderr
	if f.interactive {
		o.Stdin = os.Stdin
	}
	if f.tty {
		if term.IsTerminal(int(os.Stdin.Fd())) {
			o.Terminal, o.Stdin = true, os.Stdin
		}
	}
	return o, nil
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
		uo.Driver = "vfs"
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

// envValue reads an --env value: KEY=VALUE as it is, KEY alone from this
// process's environment (ok false when it is not set there).
func envValue(e string) (kv string, ok bool, err error) {
	k, _, hasValue := strings.Cut(e, "=")
	if k == "" {
		return "", false, errors.New("no variable name")
	}
	if strings.ContainsAny(k, " \t\n") {
		return "", false, fmt.Errorf("variable name %q has white space", k)
	}
	if hasValue {
		return e, true, nil
	}
	v, set := os.LookupEnv(k)
	if !set {
		return "", false, nil
	}
	return k + "=" + v, true, nil
}

// readEnvFile reads a docker --env-file: KEY=VALUE lines (taken as they
// are, quotes included), KEY lines taking this process's value, blank
// lines and # comments skipped.
func readEnvFile(file string) ([]string, error) {
	fh, err := os.Open(file)
	if err != nil {
		return nil, usagef("run: --env-file: %v", err)
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeft(sc.Text(), " \t")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kv, ok, err := envValue(line)
		if err != nil {
			return nil, usagef("run: --env-file %s:%d: %v", file, n, err)
		}
		if ok {
			out = append(out, kv)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("run: --env-file %s: %w", file, err)
	}
	return out, nil
}

// parseMount reads a --mount value as docker reads it.
func parseMount(s string) (srun.Mount, error) {
	m := srun.Mount{Type: srun.MountBind}
	var size, mode string
	for _, field := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(field, "=")
		switch strings.ToLower(k) {
		case "type":
			switch v {
			case srun.MountBind, srun.MountTmpfs:
				m.Type = v
			default:
				return m, fmt.Errorf("type %q: want bind or tmpfs", v)
			}
		case "source", "src":
			m.Source = v
		case "target", "destination", "dst":
			m.Destination = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return m, fmt.Errorf("%s=%q: want true or false", k, v)
			}
			m.ReadOnly = b
		case "bind-propagation":
			switch v {
			case "private", "rprivate", "shared", "rshared", "slave", "rslave":
				m.Options = append(m.Options, v)
			default:
				return m, fmt.Errorf("bind-propagation %q", v)
			}
		case "tmpfs-size":
			size = v
		case "tmpfs-mode":
			mode = v
		default:
			return m, fmt.Errorf("unknown option %q", k)
		}
	}
	if m.Destination == "" {
		return m, errors.New("no target")
	}
	if !strings.HasPrefix(m.Destination, "/") {
		return m, fmt.Errorf("target %q is not an absolute path", m.Destination)
	}
	switch m.Type {
	case srun.MountBind:
		if m.Source == "" {
			return m, errors.New("a bind mount needs a source")
		}
		if size != "" || mode != "" {
			return m, errors.New("tmpfs-size and tmpfs-mode are for type=tmpfs")
		}
		abs, err := filepath.Abs(m.Source)
		if err != nil {
			return m, err
		}
		m.Source = abs
	case srun.MountTmpfs:
		if m.Source != "" {
			return m, errors.New("a tmpfs has no source")
		}
		if size != "" {
			m.Options = append(m.Options, "size="+size)
		}
		if mode != "" {
			if _, err := strconv.ParseUint(mode, 8, 32); err != nil {
				return m, fmt.Errorf("tmpfs-mode %q: want an octal mode", mode)
			}
			m.Options = append(m.Options, "mode="+mode)
		}
	}
	return m, nil
}

// parseVolume reads a -v HOSTPATH:PATH[:ro|rw] value. Named volumes are
// not kept by strata: HOSTPATH must be a path (absolute, or starting with
// a dot).
func parseVolume(s string) (srun.Mount, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return srun.Mount{}, errors.New("want HOSTPATH:PATH[:ro|rw]")
	}
	src, dst := parts[0], parts[1]
	if !strings.HasPrefix(src, "/") && !strings.HasPrefix(src, ".") {
		return srun.Mount{}, fmt.Errorf("%q is not a path (named volumes are not supported; give an absolute or ./ path)", src)
	}
	if !strings.HasPrefix(dst, "/") {
		return srun.Mount{}, fmt.Errorf("%q is not an absolute path", dst)
	}
	m := srun.Mount{Type: srun.MountBind, Destination: dst}
	if len(parts) == 3 {
		for _, opt := range strings.Split(parts[2], ",") {
			switch opt {
			case "ro":
				m.ReadOnly = true
			case "rw":
				m.ReadOnly = false
			default:
				return srun.Mount{}, fmt.Errorf("option %q: want ro or rw", opt)
			}
		}
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return srun.Mount{}, err
	}
	m.Source = abs
	return m, nil
}
