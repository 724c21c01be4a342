package main

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newGCCmd(g *globalFlags) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "gc DIR",
		Short: "Remove blobs no image in a layout uses",
		Long: `Remove the blobs of DIR that no entry of index.json reaches, named or
untagged, and the staging files of killed strata processes. gc waits for
strata processes writing to DIR to finish, and removes nothing if a
reachable manifest or index cannot be read.`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := layout.Open(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			res, err := l.GC(c.Context())
			if err != nil {
				return err
			}
			for _, d := range res.Removed {
				g.debugf("removed blob %s", d)
			}
			out := c.OutOrStdout()
			if asJSON {
				if res.Removed == nil {
					res.Removed = []digest.Digest{}
				}
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return fmt.Errorf("encode gc result: %w", err)
				}
				_, err = fmt.Fprintf(out, "%s\n", b)
				return err
			}
			_, err = fmt.Fprintf(out, "removed %d blob(s), %s; %d staging file(s)\n", len(res.Removed), humanSize(res.Bytes), res.Staging)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print what was removed as JSON")
	return c
}
