package build

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// file is a parsed Containerfile.
type file struct {
	path     string
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	lex      *shell.Lex
}

// parseFile reads and parses the Containerfile at p with BuildKit's parser.
func parseFile(p string) (*file, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("containerfile: %w", err)
	}
	return parseBytes(p, b)
}

func parseBytes(p string, b []byte) (*file, error) {
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	stages, meta, err := instructions.Parse(res.AST, linter.New(&linter.Config{SkipAll: true}))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, located(err))
	}
	if len(stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM instruction", p)
	}
	return &file{path: p, stages: stages, metaArgs: meta, lex: shell.NewLex(res.EscapeToken)}, nil
}

// located adds the line a parse error has to its message.
func located(err error) error {
	var le *parser.LocationError
	if strings.Contains(err.Error(), "no build stage in current context") {
		err = fmt.Errorf("%w (a Containerfile starts with FROM, after global ARGs)", err)
	}
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return fmt.Errorf("line %d: %w", le.Locations[0][0].Start.Line, err)
	}
	return err
}

// line is the Containerfile line of a command, 0 when unknown.
func line(r []parser.Range) int {
	if len(r) == 0 {
		return 0
	}
	return r[0].Start.Line
}

// proxyArgs are the build args Docker takes without an ARG, and leaves
// out of history unless declared.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// args are the build args of one scope: Docker's rules (builder's
// BuildArgs): a stage sees only what it declares with ARG, valued from
// --build-arg, else the global ARG of that name, else the default.
type args struct {
	// options are --build-arg values.
	options map[string]string
	// meta are the global (before the first FROM) ARGs and the
	// predefined platform args, as expanded.
	meta map[string]string
	// declared are the stage's ARGs, in order, with their values (nil:
	// none given).
	declared map[string]*string
	order    []string
}

func (a *args) clone() *args {
	n := &args{options: a.options, meta: a.meta, declared: map[string]*string{}}
	for k, v := range a.declared {
		n.declared[k] = v
	}
	n.order = append(n.order, a.order...)
	return n
}

// value is a declared arg's value.
func (a *args) value(k string) (string, bool) {
	if v, ok := a.options[k]; ok {
		return v, true
	}
	if d := a.declared[k]; d != nil {
		return *d, true
	}
	if v, ok := a.meta[k]; ok {
		return v, true
	}
	return "", false
}

// declare adds an ARG of the stage.
func (a *args) declare(k string, v *string) {
	if _, ok := a.declared[k]; !ok {
		a.order = append(a.order, k)
	}
	a.declared[k] = v
}

// allowed are the args a stage's instructions see, sorted: its
// declared args with values, and proxy args given on the command line.
func (a *args) allowed() []string {
	seen := map[string]bool{}
	var out []string
	for _, k := range a.order {
		if v, ok := a.value(k); ok {
			out = append(out, k+"="+v)
			seen[k] = true
		}
	}
	for k, v := range a.options {
		if proxyArgs[k] && !seen[k] {
			out = append(out, k+"="+v)
		}
	}
	sort.Strings(out)
	return out
}

// filtered are the allowed args env does not set (env wins), as
// KEY=VALUE.
func (a *args) filtered(env []string) []string {
	have := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	var out []string
	for _, kv := range a.allowed() {
		k, _, _ := strings.Cut(kv, "=")
		if !have[k] {
			out = append(out, kv)
		}
	}
	return out
}

// historyArgs are the filtered args that go into a RUN's created_by:
// proxies only when declared.
func (a *args) historyArgs(env []string) []string {
	var out []string
	for _, kv := range a.filtered(env) {
		k, _, _ := strings.Cut(kv, "=")
		if _, declared := a.declared[k]; proxyArgs[k] && !declared {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// metaEnv is the environment FROM lines expand with.
func (a *args) metaEnv() shell.EnvGetter {
	var kv []string
	for k, v := range a.meta {
		if o, ok := a.options[k]; ok {
			v = o
		}
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return shell.EnvsFromSlice(kv)
}

// platformArgs are the predefined args BuildKit gives every build, for
// the target platform t and this machine's b.
func platformArgs(t, b ocispec.Platform) map[string]string {
	return map[string]string{
		"TARGETPLATFORM": platforms.Format(t),
		"TARGETOS":       t.OS,
		"TARGETARCH":     t.Architecture,
		"TARGETVARIANT":  t.Variant,
		"BUILDPLATFORM":  platforms.Format(b),
		"BUILDOS":        b.OS,
		"BUILDARCH":      b.Architecture,
		"BUILDVARIANT":   b.Variant,
	}
}

// resolveMeta expands the global ARGs in order, each seeing the ones
// before it and the predefined platform args.
func resolveMeta(f *file, options map[string]string, predefined map[string]string) (map[string]string, error) {
	meta := map[string]string{}
	for k, v := range predefined {
		meta[k] = v
	}
	a := &args{options: options, meta: meta}
	for _, c := range f.metaArgs {
		for _, kv := range c.Args {
			if kv.Value != nil {
				v, _, err := f.lex.ProcessWord(*kv.Value, a.metaEnv())
				if err != nil {
					return nil, fmt.Errorf("%s: line %d: ARG %s: %w", f.path, line(c.Location()), kv.Key, err)
				}
				meta[kv.Key] = v
			} else if _, ok := meta[kv.Key]; !ok {
				if o, ok := options[kv.Key]; ok {
					meta[kv.Key] = o
				}
			}
		}
	}
	return meta, nil
}

// stageIndex finds a stage by name (case-insensitive) or index, among
// the first n stages.
func (f *file) stageIndex(name string, n int) (int, bool) {
	for i := 0; i < n && i < len(f.stages); i++ {
		if strings.EqualFold(f.stages[i].Name, name) && f.stages[i].Name != "" {
			return i, true
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < n && i < len(f.stages) {
		return i, true
	}
	return -1, false
}

// target is the stage to build.
func (f *file) target(name string) (int, error) {
	if name == "" {
		return len(f.stages) - 1, nil
	}
	for i, s := range f.stages {
		if strings.EqualFold(s.Name, name) {
			return i, nil
		}
	}
	return -1, fmt.Errorf("%s: target stage %q could not be found", f.path, name)
}
