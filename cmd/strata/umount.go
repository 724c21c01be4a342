package main

import (
	"errors"
	"io/fs"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/bundle"
)

func newUmountCmd(g *globalFlags) *cobra.Command {
	c := &cobra.Command{
		Use:   "umount DIR",
		Short: "Unmount the overlay rootfs of a bundle, keeping its changes",
		Long: `Unmount DIR/rootfs of a bundle unpacked with --driver overlay. The upper and
work directories (DIR/.strata) stay: strata mount DIR brings the rootfs
back with every change, and commit still sees them. A rootfs that is not
mounted is left as it is (exit status 0).`,
		Example: `  strata umount ./bundle`,
		Args:    exactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if userns.Needed() {
				return usagef("umount: an unprivileged strata mounts only inside its own user namespace, which ended with that command: there is nothing to unmount")
			}
			rec, err := bundle.ReadRecord(args[0])
			if err != nil {
				return err
			}
			if err := g.checkBundleRoot(rec, args[0]); err != nil {
				return err
			}
			b, err := bundle.Open(args[0], storeOptions())
			if err != nil {
				return err
			}
			defer b.Close()
			// Unmounting what is not mounted is done, not an error.
			err = b.Unmount()
			if errors.Is(err, overlay.ErrNotMounted) || errors.Is(err, fs.ErrNotExist) {
				g.infof("%s is not mounted", b.Rootfs())
				return nil
			}
			if err != nil {
				return err
			}
			g.infof("unmounted %s", b.Rootfs())
			return nil
		},
	}
	return c
}
