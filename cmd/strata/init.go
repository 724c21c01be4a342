package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newInitCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Create an empty OCI image layout",
		Long: `Create an empty OCI image layout in DIR, creating DIR if needed.
An existing layout is left as it is; a directory holding other files is
refused.`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := layout.Init(args[0])
			if err != nil {
				return err
			}
			g.infof("initialized OCI image layout %s", args[0])
			return l.Close()
		},
	}
}
