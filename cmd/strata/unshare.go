package main

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
)

func newUnshareCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "unshare [-- CMD [ARG...]]",
		Short: "Run a command in strata's user namespace, as its root",
		Long: `Run CMD (default: $SHELL, else /bin/sh) inside the user and mount
namespace strata enters as an unprivileged user: there the user is root,
and its /etc/subuid and /etc/subgid ranges are mapped above it, as in
podman unshare and buildah unshare. The files of a rootless overlay bundle
and of its snapshots that belong to those IDs can be read, changed and
removed there (strata's own commands enter the namespace by themselves).
As root, or inside the namespace already, CMD just runs. strata exits with
CMD's status.`,
		Example: `  strata unshare -- rm -rf ./bundle
  strata unshare -- ls -ln ./bundle/.strata/upper`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			run := args
			if len(run) == 0 {
				sh := os.Getenv("SHELL")
				if sh == "" {
					sh = "/bin/sh"
				}
				run = []string{sh}
			}
			if userns.Needed() {
				return g.reexecInUserns(false)
			}
			return exitWith(runCommand(run))
		},
	}
	// What follows CMD is CMD's.
	c.Flags().SetInterspersed(false)
	return c
}
