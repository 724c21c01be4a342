package main

import (
	"context"
	"os"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
)

// rebaseFlags are rebase's flags as typed.
type rebaseFlags struct {
	oldBase, newBase, created string
	platforms                 []string
}

func newRebaseCmd(g *globalFlags) *cobra.Command {
	var f rebaseFlags
	c := &cobra.Command{
		Use:   "rebase [flags] SRC [--old-base LAYOUT:REF] [--new-base LAYOUT:REF] [NEWREF]",
		Short: "Put an image on another base image, as crane rebase does",
		Long: `Replace the layers of the old base in the image SRC with those of the new
base, every platform of an index unless --platform says which (each
matched by platform with the bases' images), and rewrite the index. The
image must start with the old base's layers, blob digests and diff_ids
both; otherwise nothing is written and the first layer that differs is
named.

As crane rebase: the config keeps the image's own fields but the platform
(the new base's), rootfs lists the new base's diff_ids then the image's
own, history holds the new base's entries then the image's past the old
base's; the manifest lists the new base's layers then the image's own and
records the new base in the org.opencontainers.image.base.digest and
.name annotations. The creation time is kept unless --created.

Without --old-base, the image's base.digest annotation names it (looked
for in the new base's layout, then in SRC's); without --new-base, its
base.name annotation does, looked up in SRC's layout: once a base's name
has moved to an updated image, 'strata rebase ./img:app' puts app on it.
The new base's layers are copied into SRC's layout.

SRC and where the result goes are as in strata mutate; the bases are
LAYOUT:REF, or a REF of SRC's layout. The digest of the new image is
printed on stdout.`,
		Example: `  strata rebase ./img:app --old-base ./img:debian-12.1 --new-base ./img:debian-12.2
  strata rebase ./img:app ./img:app-rebased --new-base ./bases:docker.io/library/debian:12
  strata rebase ./img:app                       # both bases from the image's annotations`,
		Args:              rangeArgs(1, 2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runRebase(cmd, args, &f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.oldBase, "old-base", "", "the base image the image was built on, `[LAYOUT:]REF` (default: its base.digest annotation)")
	fl.StringVar(&f.newBase, "new-base", "", "the base image to put it on, `[LAYOUT:]REF` (default: its base.name annotation)")
	fl.StringSliceVar(&f.platforms, "platform", nil, "rebase only this `os/arch[/variant]` of an index (repeatable; default: every platform)")
	fl.StringVar(&f.created, "created", "", "set the creation `time`, RFC 3339 or unix seconds (default: kept)")
	return c
}

func (g *globalFlags) runRebase(cmd *cobra.Command, args []string, f *rebaseFlags) error {
	ps, err := parsePlatforms(f.platforms)
	if err != nil {
		return err
	}
	opts := mutate.RebaseOptions{Platforms: ps}
	if cmd.Flags().Changed("created") {
		t, err := layout.ParseCreated(f.created)
		if err != nil {
			return usagef("--created: %w", err)
		}
		opts.Created = &t
	}
	for _, b := range []struct {
		flag, arg string
		ref       **mutate.Ref
	}{{"old-base", f.oldBase, &opts.OldBase}, {"new-base", f.newBase, &opts.NewBase}} {
		if b.arg == "" {
			continue
		}
		r, err := openBase(baseArg(args[0], b.arg))
		if err != nil {
			return err
		}
		defer r.Layout.Close()
		*b.ref = r
	}
	c := &imageChange{verb: "rebased", src: args[0], platforms: ps, out: cmd.OutOrStdout(),
		change: func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*mutate.Result, error) {
			return mutate.Rebase(ctx, l, root, opts)
		}}
	if len(args) > 1 {
		c.dst = args[1]
	}
	return g.runImageChange(c)
}

// baseArg is a --old-base or --new-base as LAYOUT:REF: as given, or, when
// what would be its LAYOUT is no directory and SRC is in a layout, a REF
// in SRC's layout.
func baseArg(src, arg string) string {
	dir, _, _ := strings.Cut(strings.TrimPrefix(arg, "oci:"), ":")
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
		return arg
	}
	if l := layoutOf(src); l != "" {
		return l + ":" + arg
	}
	return arg
}

// openBase opens a --old-base or --new-base LAYOUT:REF.
func openBase(arg string) (*mutate.Ref, error) {
	l, ref, err := openLayoutRef(strings.TrimPrefix(arg, "oci:"))
	if err != nil {
		return nil, err
	}
	d, err := l.Resolve(ref)
	if err != nil {
		l.Close()
		return nil, err
	}
	return &mutate.Ref{Layout: l, Descriptor: d, Name: nameOf(d)}, nil
}
