package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	srun "github.com/strata-oci/strata/snapshot/run"
	"golang.org/x/term"
)

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
