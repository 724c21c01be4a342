package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newFsckCmd(g *globalFlags) *cobra.Command {
	var asJSON, diffIDs bool
	c := &cobra.Command{
		Use:   "fsck DIR",
		Short: "Check a layout's blobs and images",
		Long: `Check DIR: every blob's content against its digest, that every blob
reachable from index.json is present with the size its descriptor gives,
and that every reachable index, manifest and config parses. Each problem
is printed on its own line; the exit status is 1 when there is one.
A referrer (signature, SBOM) whose subject is not in the layout is a
warning line: the specs allow it, and gc removes it when it is untagged.

With --diffids every layer of every image is also decompressed and checked
against its config: that it decompresses whole, is a tar archive and hashes
to the diff_id the config lists. A layout received from elsewhere is then
checked completely (plain fsck cannot see a layer whose blob is intact but
whose content the config does not describe). Each bad layer is one line
naming the manifest (and the image's names), the layer, and the expected
and actual diffIDs.`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := layout.Open(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			ctx, cancel := signalContext()
			defer cancel()
			problems, err := g.fsckWithProgress(ctx, l, diffIDs)
			if err != nil {
				return fmt.Errorf("fsck %s: %w", args[0], err)
			}
			out := c.OutOrStdout()
			if asJSON {
				if problems == nil {
					problems = []layout.Problem{}
				}
				b, err := json.MarshalIndent(problems, "", "  ")
				if err != nil {
					return fmt.Errorf("encode fsck result: %w", err)
				}
				if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
					return err
				}
			} else if len(problems) == 0 {
				_, err := fmt.Fprintln(out, "ok")
				return err
			} else {
				for _, p := range problems {
					if _, err := fmt.Fprintln(out, p.String()); err != nil {
						return err
					}
				}
			}
			if n := layout.Damaged(problems); n > 0 {
				return fmt.Errorf("fsck %s: %d problem(s) found", args[0], n)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the problems as JSON")
	c.Flags().BoolVar(&diffIDs, "diffids", false, "also decompress every layer and check it against its config's diff_ids")
	return c
}

// fsckWithProgress runs fsck with a byte bar for each stage when bars
// are drawn.
func (g *globalFlags) fsckWithProgress(ctx context.Context, l *layout.Layout, diffIDs bool) ([]layout.Problem, error) {
	o := layout.FsckOptions{DiffIDs: diffIDs}
	p := g.newProgress()
	if p.active() {
		defer p.Wait()
		o.Progress = func(stage string, total int64) func(int64) {
			return p.Bytes(stage, total).Add
		}
	}
	return l.FsckWith(ctx, o)
}
