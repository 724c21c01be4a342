package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print strata's version",
		Args:  exactArgs(0),
		RunE: func(c *cobra.Command, _ []string) error {
			v := version
			if commit != "" {
				v += " (" + commit + ")"
			}
			fmt.Fprintf(c.OutOrStdout(), "strata %s %s %s/%s\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
