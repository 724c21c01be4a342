// Package dockerfile applies Dockerfile instructions given as --change
// (docker import -c, docker commit -c) to an image config.
//
// Parsing is BuildKit's Dockerfile parser and instruction decoder, the code
// Docker itself uses for --change, so quoting, JSON and shell forms,
// HEALTHCHECK flags and ONBUILD triggers read exactly as Docker reads them.
// The merge rules (ENV replaces a variable, EXPOSE and VOLUME add to sets,
// ENTRYPOINT clears a Cmd not set in the same change list, WORKDIR is
// relative to the previous one, variables set earlier are expanded) are
// Docker's builder's, written here against strata's raw JSON config so
// that fields strata does not model survive.
package dockerfile

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
)

// ErrInvalidChange means a change is not an instruction that may change an
// image config, or is malformed.
var ErrInvalidChange = errors.New("invalid change")

// changeInstructions lists the instructions Apply accepts, as docker
// import and docker commit accept them. The others (RUN, COPY, FROM, ...)
// need a build.
var changeInstructions = []string{
	"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL",
	"ONBUILD", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}

// Runtime config fields, named as Docker and the OCI image spec name them
// inside the config object.
const (
	fieldCmd         = "Cmd"
	fieldEntrypoint  = "Entrypoint"
	fieldEnv         = "Env"
	fieldExposed     = "ExposedPorts"
	fieldLabels      = "Labels"
	fieldUser        = "User"
	fieldVolumes     = "Volumes"
	fieldWorkingDir  = "WorkingDir"
	fieldStopSignal  = "StopSignal"
	fieldHealthcheck = "Healthcheck"
	fieldOnBuild     = "OnBuild"
	fieldShell       = "Shell"
)

// defaultShell runs the shell forms of CMD and ENTRYPOINT when the config
// names no Shell.
var defaultShell = []string{"/bin/sh", "-c"}

// Apply parses changes (one or more instructions each; lines are joined as
// Docker joins them) and applies them in order to cfg's runtime config.
// On error cfg may be partly changed; callers apply changes to a config
// they have not stored yet.
func Apply(cfg *layout.Config, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidChange, err)
	}
	a := &Applier{cfg: cfg, lex: shell.NewLex(res.EscapeToken)}
	for _, n := range res.AST.Children {
		name := strings.ToUpper(n.Value)
		if !allowed(name) {
			return fmt.Errorf("%w: %s is not a valid change command (use one of %s)", ErrInvalidChange, name, strings.Join(changeInstructions, ", "))
		}
		c, err := instructions.ParseCommand(n)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidChange, n.Original, err)
		}
		if err := a.apply(c); err != nil {
			return fmt.Errorf("%w: %q: %v", ErrInvalidChange, n.Original, err)
		}
	}
	return nil
}

func allowed(name string) bool {
	for _, n := range changeInstructions {
		if n == name {
			return true
		}
	}
	return false
}

// Applier applies instructions, one at a time, to one config: the
// changes of one Apply, or the config instructions of one build stage.
type Applier struct {
	cfg *layout.Config
	lex *shell.Lex
	// cmdSet says a CMD came earlier in this change list or stage: only
	// then does a later ENTRYPOINT keep Cmd, as in a Docker build.
	cmdSet bool
}

// NewApplier returns an Applier of config instructions to cfg, lex being
// the Containerfile's (its escape token).
func NewApplier(cfg *layout.Config, lex *shell.Lex) *Applier {
	return &Applier{cfg: cfg, lex: lex}
}

// Config is the config instructions are applied to.
func (a *Applier) Config() *layout.Config { return a.cfg }

// SetConfig makes later instructions apply to cfg (a build step whose
// result came from the cache); what the stage has set so far is kept.
func (a *Applier) SetConfig(cfg *layout.Config) { a.cfg = cfg }

// IsConfig says whether c changes only the image config in a build:
// everything but RUN, COPY, ADD, WORKDIR (which makes its directory) and
// ARG (which changes no config).
func IsConfig(c instructions.Command) bool {
	switch c.(type) {
	case *instructions.CmdCommand, *instructions.EntrypointCommand, *instructions.EnvCommand,
		*instructions.LabelCommand, *instructions.ExposeCommand, *instructions.VolumeCommand,
		*instructions.UserCommand, *instructions.StopSignalCommand, *instructions.HealthCheckCommand,
		*instructions.OnbuildCommand, *instructions.ShellCommand, *instructions.MaintainerCommand:
		return true
	}
	return false
}

// ApplyExpanded applies one instruction whose words the caller has
// expanded already (a build expands with its build args too); env
// expands EXPOSE, the one instruction that splits into words after
// expansion. WORKDIR only sets WorkingDir: the build makes the
// directory.
func (a *Applier) ApplyExpanded(c instructions.Command, env shell.EnvGetter) error {
	return a.set(c, env)
}

func (a *Applier) env() ([]string, error) {
	var env []string
	_, err := a.cfg.GetRuntime(fieldEnv, &env)
	return env, err
}

// expand substitutes variables set so far ($VAR, ${VAR:-x}) in the
// instructions Docker expands them in.
func (a *Applier) expand(c instructions.Command) error {
	ex, ok := c.(instructions.SupportsSingleWordExpansion)
	if !ok {
		return nil
	}
	env, err := a.env()
	if err != nil {
		return err
	}
	getter := shell.EnvsFromSlice(env)
	return ex.Expand(func(word string) (string, error) {
		s, _, err := a.lex.ProcessWord(word, getter)
		return s, err
	})
}

func (a *Applier) apply(c instructions.Command) error {
	if err := a.expand(c); err != nil {
		return err
	}
	env, err := a.env()
	if err != nil {
		return err
	}
	return a.set(c, shell.EnvsFromSlice(env))
}

// set applies an expanded instruction.
func (a *Applier) set(c instructions.Command, env shell.EnvGetter) error {
	switch c := c.(type) {
	case *instructions.CmdCommand:
		return a.cmd(c)
	case *instructions.EntrypointCommand:
		return a.entrypoint(c)
	case *instructions.EnvCommand:
		return a.setEnv(c.Env)
	case *instructions.LabelCommand:
		return a.labels(c.Labels)
	case *instructions.ExposeCommand:
		return a.expose(c.Ports, env)
	case *instructions.VolumeCommand:
		return a.volumes(c.Volumes)
	case *instructions.UserCommand:
		return a.cfg.SetRuntime(fieldUser, c.User)
	case *instructions.WorkdirCommand:
		return a.workdir(c.Path)
	case *instructions.StopSignalCommand:
		if err := checkSignal(c.Signal); err != nil {
			return err
		}
		return a.cfg.SetRuntime(fieldStopSignal, c.Signal)
	case *instructions.HealthCheckCommand:
		return a.cfg.SetRuntime(fieldHealthcheck, c.Health)
	case *instructions.OnbuildCommand:
		var triggers []string
		if _, err := a.cfg.GetRuntime(fieldOnBuild, &triggers); err != nil {
			return err
		}
		return a.cfg.SetRuntime(fieldOnBuild, append(triggers, c.Expression))
	case *instructions.ShellCommand:
		return a.cfg.SetRuntime(fieldShell, c.Shell)
	case *instructions.MaintainerCommand:
		return a.cfg.Set("author", c.Maintainer)
	}
	return fmt.Errorf("%s is not a valid change command", strings.ToUpper(c.Name()))
}

func (a *Applier) cmd(c *instructions.CmdCommand) error {
	cmd, err := a.cmdLine(c.ShellDependantCmdLine)
	if err != nil {
		return err
	}
	a.cmdSet = true
	return a.cfg.SetRuntime(fieldCmd, cmd)
}

// entrypoint sets Entrypoint and, unless a CMD came before it in this
// change list, clears Cmd, as a Docker build does.
func (a *Applier) entrypoint(c *instructions.EntrypointCommand) error {
	ep, err := a.cmdLine(c.ShellDependantCmdLine)
	if err != nil {
		return err
	}
	if !a.cmdSet {
		if err := a.cfg.SetRuntime(fieldCmd, nil); err != nil {
			return err
		}
	}
	return a.cfg.SetRuntime(fieldEntrypoint, ep)
}

func (a *Applier) setEnv(kvs instructions.KeyValuePairs) error {
	env, err := a.env()
	if err != nil {
		return err
	}
	for _, kv := range kvs {
		env = setEnv(env, kv.Key, kv.Value)
	}
	return a.cfg.SetRuntime(fieldEnv, env)
}

func (a *Applier) labels(kvs instructions.KeyValuePairs) error {
	labels := map[string]string{}
	if _, err := a.cfg.GetRuntime(fieldLabels, &labels); err != nil {
		return err
	}
	if labels == nil {
		labels = map[string]string{}
	}
	for _, kv := range kvs {
		labels[kv.Key] = kv.Value
	}
	return a.cfg.SetRuntime(fieldLabels, labels)
}

func (a *Applier) volumes(add []string) error {
	vols := map[string]struct{}{}
	if _, err := a.cfg.GetRuntime(fieldVolumes, &vols); err != nil {
		return err
	}
	if vols == nil {
		vols = map[string]struct{}{}
	}
	for _, v := range add {
		v = strings.TrimSpace(v)
		if v == "" {
			return errors.New("VOLUME specified can not be an empty string")
		}
		vols[v] = struct{}{}
	}
	return a.cfg.SetRuntime(fieldVolumes, vols)
}

func (a *Applier) workdir(p string) error {
	var cur string
	if _, err := a.cfg.GetRuntime(fieldWorkingDir, &cur); err != nil {
		return err
	}
	wd, err := workdir(cur, p)
	if err != nil {
		return err
	}
	return a.cfg.SetRuntime(fieldWorkingDir, wd)
}

// cmdLine turns a CMD or ENTRYPOINT into argv: the JSON form as written,
// the shell form run by the config's Shell (default /bin/sh -c).
func (a *Applier) cmdLine(c instructions.ShellDependantCmdLine) ([]string, error) {
	if len(c.Files) > 0 {
		return nil, errors.New("heredocs are not supported in a change")
	}
	if !c.PrependShell {
		if c.CmdLine == nil {
			return []string{}, nil
		}
		return c.CmdLine, nil
	}
	var sh []string
	if _, err := a.cfg.GetRuntime(fieldShell, &sh); err != nil {
		return nil, err
	}
	if len(sh) == 0 {
		sh = defaultShell
	}
	return append(append([]string{}, sh...), c.CmdLine...), nil
}

// setEnv replaces the value of key in env, or appends key=value.
func setEnv(env []string, key, value string) []string {
	kv := key + "=" + value
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			env[i] = kv
			return env
		}
	}
	return append(env, kv)
}

// workdir resolves WORKDIR p against the current working directory, as
// Docker does for Linux images.
func workdir(cur, p string) (string, error) {
	if p == "" {
		return "", errors.New("WORKDIR needs a path")
	}
	if !path.IsAbs(p) {
		return path.Join("/", cur, p), nil
	}
	return path.Clean(p), nil
}

// checkSignal accepts what Docker accepts for STOPSIGNAL: a signal name
// with or without SIG, or a number. A name containing a variable that
// could not be expanded is refused too.
func checkSignal(s string) error {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return fmt.Errorf("invalid signal: %s", s)
		}
		return nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if unix.SignalNum(name) != 0 {
		return nil
	}
	if rt, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rt); err == nil && n >= 0 && n <= 30 {
			return nil
		}
	}
	if rt, ok := strings.CutPrefix(name, "SIGRTMAX-"); ok {
		if n, err := strconv.Atoi(rt); err == nil && n >= 0 && n <= 30 {
			return nil
		}
	}
	if name == "SIGRTMIN" || name == "SIGRTMAX" {
		return nil
	}
	return fmt.Errorf("invalid signal: %s", s)
}

// expose adds ports to ExposedPorts. Each word is expanded into possibly
// several words first (EXPOSE $PORTS with PORTS="80 443"), then read as
// PORT[-END][/PROTO].
func (a *Applier) expose(words []string, getter shell.EnvGetter) error {
	ports := map[string]struct{}{}
	if _, err := a.cfg.GetRuntime(fieldExposed, &ports); err != nil {
		return err
	}
	if ports == nil {
		ports = map[string]struct{}{}
	}
	for _, w := range words {
		expanded, err := a.lex.ProcessWords(w, getter)
		if err != nil {
			return err
		}
		for _, p := range expanded {
			keys, err := parsePorts(p)
			if err != nil {
				return err
			}
			for _, k := range keys {
				ports[k] = struct{}{}
			}
		}
	}
	return a.cfg.SetRuntime(fieldExposed, ports)
}

// maxPortRange bounds how many ports one EXPOSE range may add, so that a
// typo such as 1-65535 does not make a config of a million keys.
const maxPortRange = 65536

// parsePorts reads an EXPOSE word, PORT[-END][/PROTO] with PROTO tcp
// (default), udp or sctp, and returns the ExposedPorts keys it stands for
// ("80/tcp").
func parsePorts(s string) ([]string, error) {
	spec, proto, hasProto := strings.Cut(s, "/")
	proto = strings.ToLower(proto)
	if !hasProto {
		proto = "tcp"
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return nil, fmt.Errorf("invalid proto %q in port %q", proto, s)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	start, err := parsePort(lo)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q: %v", s, err)
	}
	end := start
	if isRange {
		if end, err = parsePort(hi); err != nil {
			return nil, fmt.Errorf("invalid port %q: %v", s, err)
		}
		if end < start {
			return nil, fmt.Errorf("invalid port range %q: end before start", s)
		}
	}
	if end-start >= maxPortRange {
		return nil, fmt.Errorf("invalid port range %q", s)
	}
	out := make([]string, 0, end-start+1)
	for p := start; p <= end; p++ {
		out = append(out, strconv.Itoa(p)+"/"+proto)
	}
	sort.Strings(out)
	return out, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	return int(n), nil
}
