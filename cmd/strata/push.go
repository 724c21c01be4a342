package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout/remote"
)

func newPushCmd(g *globalFlags) *cobra.Command {
	var (
		f         transferFlags
		byDigest  bool
		mountFrom []string
	)
	c := &cobra.Command{
		Use:   "push [flags] LAYOUT[:REF] [docker://]HOST/REPO[:TAG|@DIGEST]",
		Short: "Copy an image from a layout to a registry",
		Long: `Copy an image from an OCI image layout to a registry. A destination with no
tag is pushed as :latest, unless --by-digest pushes it under its digest only.
A destination with @DIGEST must be the image's digest. A multi-platform image
is pushed whole unless --platform selects from it.

Blobs the registry already holds are not uploaded again; blobs it holds in
another repository (one the image was pulled from, or --mount-from) are
mounted from there when the registry allows it. The manifest is uploaded
last, so the tag moves only once the whole image is there. The pushed
reference, pinned to its digest, is printed on stdout.

--referrers also pushes the image's referrers found in the layout
(signatures, SBOMs, cosign's .sig/.att/.sbom tags), recursively: through
the referrers API, or the sha256-<hex> fallback tag where the registry
has none, digests unchanged.`,
		Example: `  strata push ./images:app localhost:5000/team/app:v1
  strata push --by-digest ./images:app registry.example.com/team/app
  strata push --insecure ./images:app docker://10.0.0.5:5000/app:v1`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := remote.ParseReference(args[1]); err != nil {
				return usageError{err}
			}
			l, ref, err := openLayoutRef(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			opts, done, err := f.options("pushed")
			if err != nil {
				return err
			}
			if byDigest {
				opts = append(opts, remote.WithByDigest())
			}
			opts = append(opts, remote.WithMountFrom(mountFrom...))
			// Ctrl-C stops the transfer cleanly: partial blobs are removed.
			ctx, cancel := signalContext()
			defer cancel()
			res, err := remote.Push(ctx, l, ref, args[1], opts...)
			done()
			f.flushCache()
			if err != nil {
				return err
			}
			g.infof("pushed %s%s", res.Reference, referrerNote(res.Referrers))
			fmt.Fprintln(cmd.OutOrStdout(), res.Reference)
			return nil
		},
	}
	f.add(g, c.Flags(), true)
	c.Flags().BoolVar(&byDigest, "by-digest", false, "push without a tag: the image is stored under its digest only")
	c.Flags().StringSliceVar(&mountFrom, "mount-from", nil, "ask the registry to mount blobs from `REPO` (another repository of the destination registry)")
	return c
}
