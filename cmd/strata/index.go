package main

import (
	"context"
	"fmt"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newIndexCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "index",
		Short: "Build multi-platform images: create, add to and remove from an image index",
		Long: `Build an image index (a multi-platform image) out of single-platform
images, as buildah manifest and crane index do. Each image is listed with
the platform its config gives (os, architecture, variant, os.version,
os.features); an image that is an index itself adds the entries it lists.
Images may come from other layouts: their blobs are copied in, verified.
The index is stored anew and LAYOUT:NAME names it; its digest is printed
on stdout. strata push of the index pushes every image it lists.`,
		Example: `  strata index create ./img:app ./img:app-amd64 ./img:app-arm64
  strata index add ./img:app ./build-s390x:app
  strata index rm ./img:app linux/arm64
  strata push ./img:app localhost:5000/app:1`,
	}
	c.AddCommand(newIndexCreateCmd(g), newIndexAddCmd(g), newIndexRmCmd(g))
	return c
}

func newIndexCreateCmd(g *globalFlags) *cobra.Command {
	var annotations []string
	c := &cobra.Command{
		Use:   "create [--annotation K=V] LAYOUT:NAME LAYOUT:REF...",
		Short: "Make a new index of images",
		Long: `Make a new image index listing each LAYOUT:REF with its platform, and name
it LAYOUT:NAME, which must name nothing yet (index add changes an index).
Of several images for one platform the last is listed.`,
		Args:              minArgs(2),
		ValidArgsFunction: completeRefArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIndexEdit(cmd, g, "created", args[0], args[1:], annotations, (*layout.Layout).CreateIndex)
		},
	}
	c.Flags().StringArrayVar(&annotations, "annotation", nil, "add the annotation `KEY=VALUE` to the index (repeatable)")
	return c
}

func newIndexAddCmd(g *globalFlags) *cobra.Command {
	var annotations []string
	c := &cobra.Command{
		Use:   "add [--annotation K=V] LAYOUT:NAME LAYOUT:REF...",
		Short: "Add images to an index",
		Long: `Add each LAYOUT:REF to the index LAYOUT:NAME names, with its platform,
and name the new index LAYOUT:NAME. An entry for a platform an added
image has is replaced by it (a new build of linux/amd64 replaces the old).`,
		Args:              minArgs(2),
		ValidArgsFunction: completeRefArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIndexEdit(cmd, g, "updated", args[0], args[1:], annotations, (*layout.Layout).AddToIndex)
		},
	}
	c.Flags().StringArrayVar(&annotations, "annotation", nil, "add the annotation `KEY=VALUE` to the index (repeatable)")
	return c
}

func newIndexRmCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm LAYOUT:NAME DIGEST|PLATFORM...",
		Short: "Remove images from an index",
		Long: `Remove from the index LAYOUT:NAME names the entries with each DIGEST
(sha256:... or @sha256:...) or PLATFORM (os/arch[/variant]), and name the
new index LAYOUT:NAME. A DIGEST or PLATFORM the index does not list is an
error, and nothing changes.`,
		Args:              minArgs(2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runIndexRm(cmd, g, args[0], args[1:])
		},
	}
}

type indexEdit func(l *layout.Layout, ctx context.Context, name string, srcs []layout.IndexSource, o layout.IndexOptions) (ocispec.Descriptor, error)

func runIndexEdit(cmd *cobra.Command, g *globalFlags, verb, target string, srcArgs, annotations []string, edit indexEdit) error {
	dir, name, err := parseNewImageArg("index", target)
	if err != nil {
		return err
	}
	if name == "" {
		return usagef("index %s: name the index as LAYOUT:NAME", target)
	}
	ann, err := parseAnnotations(annotations)
	if err != nil {
		return err
	}
	for _, a := range srcArgs {
		if _, _, err := parseRefArg(a); err != nil {
			return err
		}
	}
	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	srcs, closeAll, err := indexSources(l, srcArgs)
	defer closeAll()
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	d, err := edit(l, ctx, name, srcs, layout.IndexOptions{Annotations: ann})
	if err != nil {
		if l.Created() {
			u, uerr := l.Undo()
			return fmt.Errorf("%w%s", err, undoNote(dir, u, uerr))
		}
		return err
	}
	g.infof("%s index %s:%s (%s)", verb, dir, name, d.Digest)
	_, err = fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
	return err
}

// indexSources resolves each LAYOUT:REF, opening the layouts that are not
// l's; closeAll closes them.
func indexSources(l *layout.Layout, args []string) ([]layout.IndexSource, func(), error) {
	var opened []*layout.Layout
	closeAll := func() {
		for _, o := range opened {
			o.Close()
		}
	}
	byDir := map[string]*layout.Layout{}
	if abs, err := filepath.Abs(l.Dir()); err == nil {
		byDir[abs] = l
	}
	var out []layout.IndexSource
	for _, a := range args {
		dir, ref, err := parseRefArg(a)
		if err != nil {
			return nil, closeAll, err
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, closeAll, err
		}
		src := byDir[abs]
		if src == nil {
			if src, err = layout.Open(dir); err != nil {
				return nil, closeAll, err
			}
			opened = append(opened, src)
			byDir[abs] = src
		}
		d, err := src.Resolve(ref)
		if err != nil {
			return nil, closeAll, err
		}
		out = append(out, layout.IndexSource{Layout: src, Descriptor: d})
	}
	return out, closeAll, nil
}

func runIndexRm(cmd *cobra.Command, g *globalFlags, target string, sel []string) error {
	dir, name, err := parseNewImageArg("index rm", target)
	if err != nil {
		return err
	}
	if name == "" {
		return usagef("index rm %s: name the index as LAYOUT:NAME", target)
	}
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	d, err := l.RemoveFromIndex(cmd.Context(), name, sel)
	if err != nil {
		return err
	}
	g.infof("updated index %s:%s (%s)", dir, name, d.Digest)
	_, err = fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
	return err
}
