package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
)

// appendFlags are append's flags as typed.
type appendFlags struct {
	platforms            []string
	compress             string
	level                int
	force, preserveOwner bool
	timestamp, message   string
	author, createdBy    string
	setBase              bool
}

func newAppendCmd(g *globalFlags) *cobra.Command {
	var f appendFlags
	c := &cobra.Command{
		Use:   "append [flags] SRC TARBALL|DIR... [NEWREF]",
		Short: "Add layers to an image from tarballs or directories",
		Long: `Add a layer for each TARBALL or DIR to the image SRC, every platform of an
index unless --platform says which, each with a history entry
(created_by "strata append PATH"), and rewrite the index. A layer is
stored once however many platforms get it.

A TARBALL ("-" for stdin) may be plain, gzip, zstd, xz or bzip2 (sniffed):
gzip and zstd are stored byte for byte (unless --force-compression), the
others compressed with --compression; input that is not a tar is refused.
A DIR becomes a layer of the files under it, in a fixed order, owned by
root unless --preserve-owner, mtimes kept (capped by --timestamp),
hardlinks kept, file capabilities kept and other extended attributes
left out.

SRC and where the result goes are as in strata mutate; NEWREF is written
LAYOUT:NAME (SRC's layout) or with a transport prefix (oci:, oci-archive:,
docker-archive:), so that it is never taken for a file. The digest of the
new image is printed on stdout.

The creation time of the history entries and the config is --timestamp,
else $SOURCE_DATE_EPOCH (which also caps directory mtimes), else now.`,
		Example: `  strata append ./img:v1 app.tar.gz ./img:v2
  strata append ./img:v1 ./build/out            # the name v1 moves to the result
  tar -C out -c . | strata append --platform linux/amd64 ./img:v1 - ./img:v1-amd64
  SOURCE_DATE_EPOCH=1700000000 strata append oci-archive:app.tar ./rootfs-extra`,
		Args:              minArgs(2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runAppend(cmd, args, &f)
		},
	}
	fl := c.Flags()
	fl.StringSliceVar(&f.platforms, "platform", nil, "add the layers to this `os/arch[/variant]` of an index only (repeatable; default: every platform)")
	fl.StringVar(&f.compress, "compression", "gzip", "compression `KIND` for plain, xz and bzip2 tarballs and directories: gzip, zstd or none")
	fl.IntVar(&f.level, "compression-level", 0, "compression level (0: the format's default)")
	fl.BoolVar(&f.force, "force-compression", false, "recompress gzip and zstd tarballs too, with --compression")
	fl.BoolVar(&f.preserveOwner, "preserve-owner", false, "keep the owners of a directory's files (default: root)")
	fl.StringVar(&f.timestamp, "timestamp", "", "creation `time`, RFC 3339 or unix seconds, that also caps directory mtimes (default: $SOURCE_DATE_EPOCH, else now, uncapped)")
	fl.StringVarP(&f.message, "message", "m", "", "history comment for the layers")
	fl.StringVar(&f.author, "author", "", "history author of the layers")
	fl.StringVar(&f.createdBy, "created-by", "", "history created_by `text` (default: strata append PATH)")
	fl.BoolVar(&f.setBase, "set-base-annotations", false, "record SRC as the base image (org.opencontainers.image.base.name and .digest), for a later strata rebase")
	return c
}

func (g *globalFlags) runAppend(cmd *cobra.Command, args []string, f *appendFlags) error {
	src, layers, dst := args[0], args[1:], ""
	if last := layers[len(layers)-1]; len(layers) > 1 && isNewRef(src, last) {
		layers, dst = layers[:len(layers)-1], last
	}
	kind, err := compression.ParseKind(f.compress)
	if err != nil {
		return usageError{err}
	}
	lvl, err := compressionLevel(kind, f.level)
	if err != nil {
		return err
	}
	when, err := createdTime(cmd, "timestamp", f.timestamp)
	if err != nil {
		return err
	}
	ps, err := parsePlatforms(f.platforms)
	if err != nil {
		return err
	}
	var srcs []mutate.Source
	stdinUsed := false
	for i, p := range layers {
		s := mutate.Source{Path: p, CreatedBy: f.createdBy}
		if p == "-" {
			if stdinUsed {
				return usagef("append: stdin (-) given twice")
			}
			stdinUsed = true
			s.Reader = os.Stdin
			s.Path = "stdin"
		} else if _, err := os.Stat(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) && i == len(layers)-1 && layout.ValidateRef(p) == nil && !strings.Contains(p, "/") {
				return usagef("append: %s: no such file or directory (to name the new image, write %s:%s)", p, layoutOf(src), p)
			}
			return err
		}
		srcs = append(srcs, s)
	}
	prog := g.newProgress()
	opts := mutate.AppendOptions{
		Platforms:   ps,
		Compression: kind,
		Level:       lvl,
		Recompress:  f.force,
		Dir:         mutate.DirOptions{PreserveOwner: f.preserveOwner, Clamp: when},
		Created:     when,
		Author:      f.author,
		Comment:     f.message,
		Progress: func(s mutate.Source, size int64, r io.Reader) io.Reader {
			return prog.Reader("append "+filepath.Base(s.Path), size, r)
		},
	}
	c := &imageChange{verb: "appended to", src: src, dst: dst, platforms: ps, out: cmd.OutOrStdout(),
		change: func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*mutate.Result, error) {
			o := opts
			if f.setBase {
				name := nameOf(root)
				if name == "" {
					name = typedRef(src)
				}
				o.Base = &mutate.Base{Name: name, Descriptor: root}
			}
			res, err := mutate.Append(ctx, l, root, srcs, o)
			if err != nil {
				return nil, err
			}
			for _, ly := range res.Layers {
				g.debugf("layer %s (%d bytes), diffID %s", ly.Descriptor.Digest, ly.Descriptor.Size, ly.DiffID)
			}
			return res.Result, nil
		}}
	err = g.runImageChange(c)
	prog.Wait()
	return err
}

// isNewRef says whether the last argument of append names the result:
// a transport name, or a name in SRC's layout written LAYOUT:NAME.
func isNewRef(src, arg string) bool {
	if hasTransport(arg) {
		return true
	}
	dir := layoutOf(src)
	return dir != "" && strings.HasPrefix(arg, dir+":")
}

// layoutOf is the layout directory of a SRC that is a layout, else "".
func layoutOf(src string) string {
	src = strings.TrimPrefix(src, "oci:")
	if hasTransport(src) {
		return ""
	}
	dir, _, _ := strings.Cut(src, ":")
	return dir
}

// typedRef is the name part of a SRC as typed (LAYOUT:NAME,
// oci-archive:FILE:NAME), "" when there is none or it is a digest.
func typedRef(src string) string {
	src = strings.TrimPrefix(src, "oci:")
	if hasTransport(src) {
		_, src, _ = strings.Cut(src, ":")
	}
	_, ref, _ := strings.Cut(src, ":")
	if _, ok := layout.IsDigestRef(ref); ok || strings.HasPrefix(ref, "@") {
		return ""
	}
	return ref
}

// nameOf is the name an image was found by (its full name where index.json
// records one), for base annotations; "" for an untagged image.
func nameOf(d ocispec.Descriptor) string {
	if n := d.Annotations[layout.AnnotationImageName]; n != "" {
		return n
	}
	return d.Annotations[layout.AnnotationRefName]
}
