package main

import (
	"context"
	"runtime/debug"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/layout/mutate"
)

// limitMemory keeps flatten, export and diff, whose file list of an
// image of 100k+ files is tens of MB live, well under 100 MB: a soft
// limit makes the collector work instead of letting the heap double, as
// unpack does.
func limitMemory() { debug.SetMemoryLimit(64 << 20) }

// flattenFlags are flatten's flags as typed.
type flattenFlags struct {
	platforms []string
	compress  string
	level     int
}

func newFlattenCmd(g *globalFlags) *cobra.Command {
	var f flattenFlags
	c := &cobra.Command{
		Use:   "flatten [flags] SRC [NEWREF]",
		Short: "Squash an image's layers into one, as crane flatten does",
		Long: `Replace the layers of the image SRC by one layer holding its merged file
system (whiteouts applied, hardlinks, owners, xattrs and devices kept),
every platform of an index unless --platform says which, and rewrite the
index. The layer is streamed from the old layers into the layout,
compressed with --compression, without unpacking anything to disk; it is
the tar strata export writes, so the same image always flattens to the
same digest.

As crane flatten: the config is kept but for rootfs (the new layer's
diff_id) and history, which becomes one entry, created_by "strata flatten
<old manifest digest>", with the old history as JSON in its comment. The
manifest keeps its media types and annotations, but for the base image's
(org.opencontainers.image.base.*), which no longer holds.

SRC and where the result goes are as in strata mutate: with no NEWREF the
name SRC was found by moves to the new image; an archive
(oci-archive:FILE, docker-archive:FILE) is rewritten in place. The digest
of the new image (or index) is printed on stdout.`,
		Example: `  strata flatten ./img:v1 ./img:v1-flat
  strata flatten --platform linux/amd64 --compression zstd ./img:v1
  strata flatten oci-archive:app.tar`,
		Args:              rangeArgs(1, 2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runFlatten(cmd, args, &f)
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&f.platforms, "platform", nil, "flatten only this `os/arch[/variant]` of an index (repeatable; default: every platform)")
	fl.StringVar(&f.compress, "compression", "gzip", "layer compression: `gzip`, zstd or none")
	fl.IntVar(&f.level, "compression-level", 0, "compression level (0: 1, the fastest, for gzip; the format's default for zstd)")
	return c
}

func (g *globalFlags) runFlatten(cmd *cobra.Command, args []string, f *flattenFlags) error {
	kind, err := compression.ParseKind(f.compress)
	if err != nil {
		return usageError{err}
	}
	lvl, err := compressionLevel(kind, f.level)
	if err != nil {
		return err
	}
	ps, err := parsePlatforms(f.platforms)
	if err != nil {
		return err
	}
	limitMemory()
	c := &imageChange{verb: "flattened", src: args[0], platforms: ps, out: cmd.OutOrStdout(),
		change: func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*mutate.Result, error) {
			return imagefs.Flatten(ctx, l, root, imagefs.FlattenOptions{Platforms: ps, Compression: kind, Level: lvl})
		}}
	if len(args) > 1 {
		c.dst = args[1]
	}
	return g.runImageChange(c)
}
