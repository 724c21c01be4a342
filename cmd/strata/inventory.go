package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
)

func newInventoryCmd(g *globalFlags) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "inventory LAYOUT [-o FILE]",
		Short: "Write what a layout holds, for delta bundles made elsewhere",
		Long: `Write, as JSON on stdout (or to FILE), the digest and size of every blob
the images of LAYOUT reach, and its names. Carried to the other side of an
air gap, the file is the BASE of strata save --since BASE, which then
leaves out every layer LAYOUT holds already.`,
		Example: `  strata inventory /srv/images > inv.json          # on the far side
  strata save --since inv.json ./img:v2 -o delta.tar  # on the near side
  strata load delta.tar /srv/images                   # on the far side again`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			return runInventory(c, g, args[0], out)
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "write the inventory to `FILE` (replaced whole) instead of stdout")
	return c
}

func runInventory(c *cobra.Command, g *globalFlags, dir, out string) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	ctx, cancel := signalContext()
	defer cancel()
	inv, err := l.Inventory(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(inv)
	if err != nil {
		return fmt.Errorf("encode inventory: %w", err)
	}
	b = append(b, '\n')
	if out == "" || out == "-" {
		_, err = c.OutOrStdout().Write(b)
		return err
	}
	if err := fsx.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	g.infof("inventory of %s: %d blobs, %d names, in %s", dir, len(inv.Blobs), len(inv.Names), out)
	return nil
}
