package main

import (
	"errors"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout/remote"
)

func newLogoutCmd(g *globalFlags) *cobra.Command {
	var authFile string
	c := &cobra.Command{
		Use:   "logout [flags] [REGISTRY]",
		Short: "Remove the stored credentials of a registry",
		Long: `Remove the credentials strata login (or docker login) stored for a
registry. Logging out of a registry with no stored credentials is not an
error.`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Like docker, no registry means Docker Hub.
			if len(args) == 0 {
				args = []string{"docker.io"}
			}
			err := remote.Logout(cmd.Context(), args[0], credentialOptions(authFile)...)
			if errors.Is(err, remote.ErrNotLoggedIn) {
				g.infof("not logged in to %s", args[0])
				return nil
			}
			if err != nil {
				return err
			}
			g.infof("removed the credentials for %s", args[0])
			return nil
		},
	}
	c.Flags().StringVar(&authFile, "authfile", "", "the credentials `FILE` (docker config.json format) to edit instead of $DOCKER_CONFIG/config.json or ~/.docker/config.json")
	return c
}
