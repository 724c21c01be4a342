package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout/transport"
)

func newLoadCmd(g *globalFlags) *cobra.Command {
	var f copyFlags
	c := &cobra.Command{
		Use:   "load FILE LAYOUT[:NAME]",
		Short: "Read the images of a docker-archive or oci-archive into a layout",
		Long: `Read every image of an archive into LAYOUT (created if needed) with the
names the archive gives them, fully qualified as docker and podman record
them (docker save's ov1:latest is docker.io/library/ov1:latest, and
LAYOUT:ov1 finds it), or with NAME when the archive holds one image (the
archive's name is then kept beside it). FILE "-" is stdin. Archives written by docker save (every version),
podman save, skopeo, crane and strata are read, compressed or not. A
hostile or damaged archive is refused and leaves LAYOUT as it was. A delta
bundle (strata save --since) takes the layers it leaves out from LAYOUT;
when LAYOUT lacks some, the load fails naming them and changes nothing.`,
		Example: `  strata load app.tar ./img
  docker save busybox | strata load - ./img:busybox`,
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o, err := f.options(false)
			if err != nil {
				return err
			}
			o.Partial = true
			src, err := transport.ParseSource("docker-archive:" + args[0])
			if err != nil {
				return usageError{err}
			}
			dst, err := transport.ParseDestination("oci:" + args[1])
			if err != nil {
				return usageError{err}
			}
			return g.runCopy(src, dst, o, "loaded")
		},
	}
	f.add(g, c.Flags(), "format")
	return c
}
