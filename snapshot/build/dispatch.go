package build

import (
	"context"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
)

// keyOf hashes the parts of a cache key.
func keyOf(parts ...string) digest.Digest {
	d := digest.SHA256.Digester()
	for _, p := range parts {
		fmt.Fprintf(d.Hash(), "%d:%s\n", len(p), p)
	}
	return d.Digest()
}

// dispatch runs one instruction of stage st.
func (b *builder) dispatch(ctx context.Context, st *stage, c instructions.Command, text string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.step++
	start := time.Now()
	b.event(st, text, false, false, 0)
	cached, err := b.dispatchOne(ctx, st, c)
	if err != nil {
		return b.wrap(c, text, err)
	}
	b.event(st, text, true, cached, time.Since(start))
	return nil
}

func (b *builder) dispatchOne(ctx context.Context, st *stage, c instructions.Command) (bool, error) {
	env, getter, err := st.env()
	if err != nil {
		return false, err
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(func(w string) (string, error) {
			s, _, err := b.f.lex.ProcessWord(w, getter)
			return s, err
		}); err != nil {
			return false, err
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		lex := *b.f.lex
		lex.RawQuotes, lex.RawEscapes = true, true
		if err := ex.ExpandRaw(func(w string) (string, error) {
			s, _, err := lex.ProcessWord(w, getter)
			return s, err
		}); err != nil {
			return false, err
		}
	}
	switch c := c.(type) {
	case *instructions.ArgCommand:
		return b.arg(st, c)
	case *instructions.WorkdirCommand:
		return b.workdir(ctx, st, c, getter)
	case *instructions.RunCommand:
		return b.run(ctx, st, c, env)
	case *instructions.CopyCommand:
		return b.copy(ctx, st, copySpec{cmd: "COPY", sd: c.SourcesAndDest, from: c.From, chown: c.Chown, chmod: c.Chmod, excludes: c.ExcludePatterns, parents: c.Parents})
	case *instructions.AddCommand:
		return b.copy(ctx, st, copySpec{cmd: "ADD", sd: c.SourcesAndDest, chown: c.Chown, chmod: c.Chmod, excludes: c.ExcludePatterns, add: true, checksum: c.Checksum, unpack: c.Unpack})
	}
	if !dockerfile.IsConfig(c) {
		return false, fmt.Errorf("unsupported instruction %s", strings.ToUpper(c.Name()))
	}
	return b.config(st, c, getter)
}

// historyText is an instruction as Docker's builder records it after
// "#(nop)".
func historyText(c instructions.Command, cfg *layout.Config) string {
	switch c := c.(type) {
	case *instructions.EnvCommand:
		var sb strings.Builder
		sb.WriteString("ENV")
		for _, kv := range c.Env {
			sb.WriteString(" " + kv.Key + "=" + kv.Value)
		}
		return sb.String()
	case *instructions.LabelCommand:
		var sb strings.Builder
		sb.WriteString("LABEL")
		for _, kv := range c.Labels {
			sb.WriteString(" " + kv.Key + "=" + kv.Value)
		}
		return sb.String()
	case *instructions.CmdCommand:
		var v []string
		_, _ = cfg.GetRuntime("Cmd", &v)
		return fmt.Sprintf("CMD %q", v)
	case *instructions.EntrypointCommand:
		var v []string
		_, _ = cfg.GetRuntime("Entrypoint", &v)
		return fmt.Sprintf("ENTRYPOINT %q", v)
	case *instructions.ExposeCommand:
		return "EXPOSE " + strings.Join(c.Ports, " ")
	case *instructions.UserCommand:
		return "USER " + c.User
	case *instructions.VolumeCommand:
		return fmt.Sprintf("VOLUME %v", c.Volumes)
	case *instructions.StopSignalCommand:
		return "STOPSIGNAL " + c.Signal
	case *instructions.HealthCheckCommand:
		return fmt.Sprintf("HEALTHCHECK %+v", *c.Health)
	case *instructions.OnbuildCommand:
		return "ONBUILD " + c.Expression
	case *instructions.ShellCommand:
		return fmt.Sprintf("SHELL %v", c.Shell)
	case *instructions.MaintainerCommand:
		return "MAINTAINER " + c.Maintainer
	}
	return strings.ToUpper(c.Name())
}

// config runs a config-only instruction: the config changes, no layer.
func (b *builder) config(st *stage, c instructions.Command, env shell.EnvGetter) (bool, error) {
	raw, err := st.cfg.Bytes()
	if err != nil {
		return false, err
	}
	cfg, err := layout.ParseConfig(raw)
	if err != nil {
		return false, err
	}
	// Applied even on a cache hit: the applier remembers a CMD for a
	// later ENTRYPOINT.
	st.cfgs.SetConfig(cfg)
	if err := st.cfgs.ApplyExpanded(c, env); err != nil {
		return false, err
	}
	createdBy, err := st.nop(historyText(c, cfg))
	if err != nil {
		return false, err
	}
	after, err := cfg.Bytes()
	if err != nil {
		return false, err
	}
	key := keyOf(st.key.String(), "config", createdBy, string(after))
	if ok, err := b.hit(st, key); ok || err != nil {
		return ok, err
	}
	return false, b.configStep(st, cfg, key, createdBy)
}

// arg declares build args of the stage; Docker's builder records each ARG
// in history.
func (b *builder) arg(st *stage, c *instructions.ArgCommand) (bool, error) {
	var parts []string
	for _, kv := range c.Args {
		st.args.declare(kv.Key, kv.Value)
		s := kv.Key
		if kv.Value != nil {
			s += "=" + *kv.Value
		}
		parts = append(parts, s)
	}
	text := "ARG " + strings.Join(parts, " ")
	createdBy, err := st.nop(text)
	if err != nil {
		return false, err
	}
	raw, err := st.cfg.Bytes()
	if err != nil {
		return false, err
	}
	key := keyOf(st.key.String(), "arg", createdBy, strings.Join(st.args.allowed(), "\n"))
	if ok, err := b.hit(st, key); ok || err != nil {
		return ok, err
	}
	cfg, err := layout.ParseConfig(raw)
	if err != nil {
		return false, err
	}
	return false, b.configStep(st, cfg, key, createdBy)
}

// workdir sets the working directory and makes it, as Docker's builder
// does (root's, 0755, with its missing parents): a layer when it was
// missing, an empty_layer entry when it was there.
func (b *builder) workdir(ctx context.Context, st *stage, c *instructions.WorkdirCommand, env shell.EnvGetter) (bool, error) {
	raw, err := st.cfg.Bytes()
	if err != nil {
		return false, err
	}
	cfg, err := layout.ParseConfig(raw)
	if err != nil {
		return false, err
	}
	st.cfgs.SetConfig(cfg)
	if err := st.cfgs.ApplyExpanded(c, env); err != nil {
		return false, err
	}
	var wd string
	if _, err := cfg.GetRuntime("WorkingDir", &wd); err != nil {
		return false, err
	}
	createdBy, err := st.nop("WORKDIR " + wd)
	if err != nil {
		return false, err
	}
	// One implementation of Docker's single-argument nop form.
	createdBy = strings.Replace(createdBy, "#(nop)  WORKDIR", "#(nop) WORKDIR", 1)
	after, err := cfg.Bytes()
	if err != nil {
		return false, err
	}
	key := keyOf(st.key.String(), "workdir", createdBy, string(after))
	if ok, err := b.hit(st, key); ok || err != nil {
		return ok, err
	}
	if err := b.ensureBundle(ctx, st); err != nil {
		return false, err
	}
	if ok, fi := exists(st.rootfs(), wd); ok && fi.IsDir() {
		return false, b.configStep(st, cfg, key, createdBy)
	}
	if err := b.mkdirRoot(st, wd); err != nil {
		return false, err
	}
	st.cfg = cfg
	return false, b.commit(ctx, st, key, createdBy)
}

// mkdirRoot makes dir and its missing parents in the stage's rootfs,
// owned by root, mode 0755.
func (b *builder) mkdirRoot(st *stage, dir string) error {
	t, err := fsx.OpenTree(st.rootfs())
	if err != nil {
		return err
	}
	defer t.Close()
	w := b.writer(st)
	var made []string
	fd, err := t.MkdirAll(strings.TrimPrefix(path.Clean(dir), "/"), func(p string) { made = append(made, p) })
	if err != nil {
		return err
	}
	unix.Close(fd)
	for _, p := range made {
		if err := w.fixDir(t, p, 0o755, 0, 0, nil); err != nil {
			return err
		}
	}
	return nil
}
