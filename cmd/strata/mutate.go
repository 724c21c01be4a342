package main

import (
	"context"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
)

// mutateFlags are mutate's flags as typed.
type mutateFlags struct {
	changes, labels, envs, annotations, platforms []string
	entrypoint, cmd, user, workdir, created       string
}

func newMutateCmd(g *globalFlags) *cobra.Command {
	var f mutateFlags
	c := &cobra.Command{
		Use:   "mutate [flags] SRC [NEWREF]",
		Short: "Change an image's config and annotations without touching its layers",
		Long: `Change the config (command, environment, labels, user, ...) and the
annotations of the image SRC, every platform of an index unless --platform
says which, and rewrite the index. Only configs, manifests and indexes are
written: layers stay byte for byte.

SRC is LAYOUT:REF (or oci:LAYOUT:REF), oci-archive:FILE[:REF] or
docker-archive:FILE[:NAME:TAG]. The result is named NEWREF in SRC's layout
(a name, or LAYOUT:NAME), or goes where a transport name says
(oci:DIR[:REF], oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG]).
With no NEWREF the name SRC was found by moves to the new image, as crane
mutate does; an image SRC names by digest stays and the new one is added
untagged; an archive is rewritten in place, its other images kept. The
digest of the new image (or index) is printed on stdout.

The changes apply in this order: --change (Dockerfile instructions, as in
strata import), --entrypoint and --cmd (JSON or shell form; --entrypoint
alone clears the command, as Docker does; '' clears), --env, --label,
--user, --workdir, --created. KEY- removes a variable, label or
annotation. Values are taken as typed, without variable expansion.
--annotation KEY=VALUE goes on each image manifest; index:KEY=VALUE on the
index. The creation time is kept unless --created.`,
		Example: `  strata mutate ./img:v1 --label org.opencontainers.image.version=1.2 --env MODE=prod
  strata mutate ./img:v1 v1-debug -c 'ENTRYPOINT ["/bin/sh"]' --user root
  strata mutate --platform linux/arm64 --annotation index:org.example.note=arm-only ./img:v1
  strata mutate oci-archive:app.tar --cmd '["/app","--serve"]'`,
		Args:              rangeArgs(1, 2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runMutate(cmd, args, &f)
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&f.changes, "change", "c", nil, "apply a Dockerfile `instruction` to the config (repeatable)")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "set a config label `KEY=VALUE`, or remove KEY- (repeatable)")
	fl.StringArrayVarP(&f.envs, "env", "e", nil, "set an environment variable `KEY=VALUE`, or remove KEY- (repeatable)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "set the entrypoint: a JSON array or a shell `command`")
	fl.StringVar(&f.cmd, "cmd", "", "set the command: a JSON array or a shell `command`")
	fl.StringVarP(&f.user, "user", "u", "", "set the `USER[:GROUP]` containers run as")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "set the working `DIR` (relative: from the current one)")
	fl.StringArrayVarP(&f.annotations, "annotation", "a", nil, "set a manifest annotation `[index:]KEY=VALUE`, or remove KEY- (repeatable)")
	fl.StringSliceVar(&f.platforms, "platform", nil, "change only this `os/arch[/variant]` of an index (repeatable; default: every platform)")
	fl.StringVar(&f.created, "created", "", "set the creation `time`, RFC 3339 or unix seconds")
	return c
}

func (g *globalFlags) runMutate(cmd *cobra.Command, args []string, f *mutateFlags) error {
	ch, err := f.toChanges(cmd)
	if err != nil {
		return err
	}
	ps, err := parsePlatforms(f.platforms)
	if err != nil {
		return err
	}
	c := &imageChange{verb: "mutated", src: args[0], platforms: ps, out: cmd.OutOrStdout(),
		change: func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*mutate.Result, error) {
			return mutate.Mutate(ctx, l, root, ch, ps)
		}}
	if len(args) > 1 {
		c.dst = args[1]
	}
	return g.runImageChange(c)
}

// changes_ turns the flags into mutate.Changes, checked.
func (f *mutateFlags) toChanges(cmd *cobra.Command) (mutate.Changes, error) {
	ch := mutate.Changes{Dockerfile: f.changes}
	fl := cmd.Flags()
	for _, v := range []struct{ flag, instr, value string }{{"entrypoint", "ENTRYPOINT", f.entrypoint}, {"cmd", "CMD", f.cmd}} {
		if !fl.Changed(v.flag) {
			continue
		}
		switch {
		case strings.TrimSpace(v.value) == "":
			empty := []string{}
			if v.flag == "entrypoint" {
				ch.Entrypoint = &empty
			} else {
				ch.Cmd = &empty
			}
		case strings.ContainsAny(v.value, "\r\n"):
			return ch, usagef("--%s: a command is one line", v.flag)
		default:
			// The Dockerfile form, read as CMD and ENTRYPOINT are: a JSON
			// array, else a shell command line.
			ch.Dockerfile = append(ch.Dockerfile, v.instr+" "+v.value)
		}
	}
	var err error
	if ch.Env, err = settings("env", f.envs); err != nil {
		return ch, err
	}
	if ch.Labels, err = settings("label", f.labels); err != nil {
		return ch, err
	}
	for _, a := range f.annotations {
		rest, onIndex := strings.CutPrefix(a, "index:")
		rest = strings.TrimPrefix(rest, "manifest:")
		s, err := mutate.ParseSetting(rest)
		if err != nil {
			return ch, usagef("--annotation: %w", err)
		}
		if onIndex {
			ch.IndexAnnotations = append(ch.IndexAnnotations, s)
		} else {
			ch.Annotations = append(ch.Annotations, s)
		}
	}
	if fl.Changed("user") {
		ch.User = &f.user
	}
	if fl.Changed("workdir") {
		ch.WorkingDir = &f.workdir
	}
	if fl.Changed("created") {
		t, err := layout.ParseCreated(f.created)
		if err != nil {
			return ch, usagef("--created: %w", err)
		}
		ch.Created = &t
	}
	if err := ch.Check(); err != nil {
		return ch, usageError{err}
	}
	if ch.Entrypoint == nil && ch.Cmd == nil && len(ch.Dockerfile) == 0 && len(ch.Env) == 0 && len(ch.Labels) == 0 &&
		len(ch.Annotations) == 0 && len(ch.IndexAnnotations) == 0 && ch.User == nil && ch.WorkingDir == nil && ch.Created == nil {
		return ch, usagef("mutate: nothing to change (see 'strata mutate --help')")
	}
	return ch, nil
}

// settings parses KEY=VALUE and KEY- flags.
func settings(flag string, vs []string) ([]mutate.Setting, error) {
	var out []mutate.Setting
	for _, v := range vs {
		s, err := mutate.ParseSetting(v)
		if err != nil {
			return nil, usagef("--%s: %w", flag, err)
		}
		out = append(out, s)
	}
	return out, nil
}
