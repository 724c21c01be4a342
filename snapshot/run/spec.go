package run

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/snapshot/spec"
)

// runSpec is the spec of one run of the bundle dir: its own spec base
// with o's process, host name, network and mounts (after extra), adapted
// to who runs it, its rootfs an absolute path and no rlimits.
func runSpec(base *specs.Spec, dir string, o Options, extra []specs.Mount) (*specs.Spec, error) {
	s := *base
	root := *base.Root
	s.Root = &root
	if !filepath.IsAbs(root.Path) {
		root.Path = filepath.Join(dir, root.Path)
	}
	p := *base.Process
	s.Process = &p
	if s.Linux != nil {
		l := *s.Linux
		s.Linux = &l
	}
	s.Mounts = append([]specs.Mount(nil), base.Mounts...)
	if strings.HasPrefix(s.Version, "1.") || s.Version == "" {
		// What strata writes needs nothing newer; crun refuses other
		// versions.
		s.Version = spec.Version
	}

	if len(o.Args) > 0 {
		p.Args = append([]string(nil), o.Args...)
	}
	if len(p.Args) == 0 {
		return nil, fmt.Errorf("%w: no command to run", ErrBadOptions)
	}
	if o.Cwd != "" {
		if !path.IsAbs(o.Cwd) {
			return nil, fmt.Errorf("%w: working directory %q is not absolute", ErrBadOptions, o.Cwd)
		}
		p.Cwd = path.Clean(o.Cwd)
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if o.User != "" {
		u, err := spec.ResolveUser(root.Path, o.User)
		if err != nil {
			return nil, err
		}
		p.User = u
	}
	if o.Hostname != "" {
		s.Hostname = o.Hostname
	}
	p.Terminal = o.Terminal
	var err error
	if p.Env, err = runEnv(p.Env, o.Env, s.Hostname, o.Terminal); err != nil {
		return nil, err
	}
	// These machines, and many CI runners, refuse setrlimit; runc then
	// fails. A container gets the limits of whoever runs it.
	p.Rlimits = nil

	spec.Adapt(&s, specForm(o))
	if !hasEnv(p.Env, "HOME") {
		// runc sets it so, crun not always: the same for both.
		p.Env = append(p.Env, "HOME="+spec.Home(root.Path, p.User.UID))
	}
	if err := setNetwork(&s, o.Network); err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, extra...)
	for _, m := range o.Mounts {
		sm, err := specMount(m)
		if err != nil {
			return nil, err
		}
		s.Mounts = append(s.Mounts, sm)
	}
	return &s, nil
}

// specForm is the form of spec a container run by the process o.Store
// describes takes.
func specForm(o Options) spec.Options {
	st := o.Store
	switch {
	case !st.Rootless:
		return spec.Options{}
	case st.UserNS != nil && !st.UserNS.Empty():
		return spec.Options{Rootless: true, InNamespace: true, Namespace: st.UserNS}
	}
	uid, gid := st.HostIDs()
	return spec.Options{Rootless: true, HostUID: uid, HostGID: gid}
}

// runEnv is the container's environment as docker builds it: PATH,
// HOSTNAME and (on a terminal) TERM first, each replaced in place by the
// bundle's environment, which env then changes in the same way.
func runEnv(base, env []string, hostname string, terminal bool) ([]string, error) {
	for _, e := range env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("%w: environment variable %q is not KEY=VALUE", ErrBadOptions, e)
		}
	}
	out := []string{"PATH=" + spec.DefaultPath}
	if hostname != "" {
		out = append(out, "HOSTNAME="+hostname)
	}
	if terminal {
		out = append(out, "TERM=xterm")
	}
	return setEnv(setEnv(out, base), env), nil
}

// hasEnv says whether env sets the variable key.
func hasEnv(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// setEnv replaces the variables of env that set holds, in place, and
// appends the others.
func setEnv(env, set []string) []string {
	out := append([]string(nil), env...)
	at := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		at[k] = i
	}
	for _, e := range set {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := at[k]; ok {
			out[i] = e
			continue
		}
		at[k] = len(out)
		out = append(out, e)
	}
	return out
}

// setNetwork gives s the network n asks for.
func setNetwork(s *specs.Spec, n string) error {
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	var ns []specs.LinuxNamespace
	for _, x := range s.Linux.Namespaces {
		if x.Type != specs.NetworkNamespace {
			ns = append(ns, x)
		}
	}
	switch n {
	case "", NetworkHost:
	case NetworkNone:
		// A new network namespace: the runtimes bring its loopback up.
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		// A rootless spec binds the host's /sys, whose class/net lists
		// the host's interfaces; in a network namespace of its own
		// (owned by the container's user namespace) sysfs can be
		// mounted, and shows the container's.
		for i, m := range s.Mounts {
			if m.Destination == "/sys" && m.Type != "sysfs" {
				s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}}
			}
		}
	default:
		return fmt.Errorf("%w: network %q (want %s or %s)", ErrBadOptions, n, NetworkHost, NetworkNone)
	}
	s.Linux.Namespaces = ns
	return nil
}

// hasPIDNamespace says whether the container gets a PID namespace of its
// own, whose PID 1 the kernel shields from signals it does not handle.
func hasPIDNamespace(s *specs.Spec) bool {
	if s.Linux == nil {
		return false
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.PIDNamespace && n.Path == "" {
			return true
		}
	}
	return false
}

// specMount is the runtime-spec mount of m.
func specMount(m Mount) (specs.Mount, error) {
	if !path.IsAbs(m.Destination) {
		return specs.Mount{}, fmt.Errorf("%w: mount destination %q is not absolute", ErrBadOptions, m.Destination)
	}
	dst := path.Clean(m.Destination)
	if dst == "/" {
		return specs.Mount{}, fmt.Errorf("%w: a mount over the container's / (source %s)", ErrBadOptions, m.Source)
	}
	rw := "rw"
	if m.ReadOnly {
		rw = "ro"
	}
	switch m.Type {
	case "", MountBind:
		if !filepath.IsAbs(m.Source) {
			return specs.Mount{}, fmt.Errorf("%w: bind mount source %q is not absolute", ErrBadOptions, m.Source)
		}
		if _, err := statSource(m.Source); err != nil {
			return specs.Mount{}, fmt.Errorf("%w: bind mount source: %w", ErrBadOptions, err)
		}
		opts := append([]string{"rbind", rw}, m.Options...)
		return specs.Mount{Destination: dst, Type: "bind", Source: m.Source, Options: opts}, nil
	case MountTmpfs:
		// docker's defaults for a --mount type=tmpfs: writable by all,
		// like /tmp, and no set-ID programs or devices.
		opts := []string{"nosuid", "nodev", rw}
		if !hasOption(m.Options, "mode") {
			opts = append(opts, "mode=1777")
		}
		opts = append(opts, m.Options...)
		return specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: opts}, nil
	}
	return specs.Mount{}, fmt.Errorf("%w: mount type %q (want %s or %s)", ErrBadOptions, m.Type, MountBind, MountTmpfs)
}

// hasOption says whether opts set the option key (key or key=...).
func hasOption(opts []string, key string) bool {
	for _, o := range opts {
		if k, _, _ := strings.Cut(o, "="); k == key {
			return true
		}
	}
	return false
}
