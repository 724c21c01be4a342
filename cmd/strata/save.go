package main

import (
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/transport"
)

func newSaveCmd(g *globalFlags) *cobra.Command {
	var o saveOptions
	c := &cobra.Command{
		Use:   "save LAYOUT:REF... -o FILE",
		Short: "Write images to a docker-archive or oci-archive",
		Long: `Write one or more images, each with its name, to one archive: a
docker-archive (the default; docker load and podman load read it) or an
oci-archive. FILE "-" is stdout. This is strata copy with several sources;
--media-types converts manifests as copy's --format does.

An image is named in the archive by the name it has in the layout; where
that is a bare tag (./img:v1) and the image has a full name (the one it
was pulled or loaded as), by its full name. --name NAME[:TAG], once per
image in the order given, names them instead.

--since BASE writes a delta bundle: every layer BASE holds is left out
(manifests, indexes and configs always go in). BASE is a layout, an
archive, or the output of strata inventory on the far side. strata load
(or copy, or sync) of the bundle into a layout holding the rest takes
those layers from it and verifies every image whole; into a layout that
lacks some, it fails naming them and changes nothing. Only strata reads
delta bundles.`,
		Example: `  strata save ./img:v1 -o app.tar
  strata save ./img:v1 ./img:v2 --name example.com/app:1 --name example.com/app:2 -o app.tar
  strata save ./img:v1 ./img:v2 --format oci-archive -o - | ssh host strata load - /srv/img
  strata save --since inv.json ./img:v2 -o delta.tar`,
		Args:              minArgs(1),
		ValidArgsFunction: completeRefArgs,
		RunE: func(c *cobra.Command, args []string) error {
			return g.runSave(args, &o)
		},
	}
	c.Flags().StringVarP(&o.out, "output", "o", "", "write the archive to `FILE` (- for stdout)")
	c.Flags().StringArrayVar(&o.names, "name", nil, "name the images `NAME[:TAG]` in the archive, one --name per image in order (default: each image's name, its full name where it has one)")
	c.Flags().StringVar(&o.format, "format", string(archive.Docker), "archive format: `docker-archive` or oci-archive")
	c.Flags().StringVar(&o.since, "since", "", "write a delta bundle without the layers `BASE` holds (a layout, an archive, or a strata inventory file)")
	o.f.add(g, c.Flags(), "media-types")
	return c
}

// saveOptions are save's flags.
type saveOptions struct {
	f                  copyFlags
	out, format, since string
	names              []string
}

// runSave writes the images args name to one archive.
func (g *globalFlags) runSave(args []string, so *saveOptions) error {
	f, out, format, since, names := &so.f, so.out, so.format, so.since, so.names
	if out == "" {
		return usagef("save needs -o FILE (- for stdout)")
	}
	var af archive.Format
	switch format {
	case string(archive.Docker), "docker":
		af = archive.Docker
	case string(archive.OCI), "oci":
		af = archive.OCI
	default:
		return usagef("--format %q: use docker-archive or oci-archive", format)
	}
	o, err := f.options(false)
	if err != nil {
		return err
	}
	if len(names) > 0 && len(names) != len(args) {
		return usagef("%d --name for %d images: give one per image, in order", len(names), len(args))
	}
	for _, n := range names {
		if archive.DockerTag(n) == "" {
			return usagef("--name %q: an image name is NAME[:TAG]", n)
		}
		if err := layout.ValidateRef(n); err != nil {
			return usageError{err}
		}
	}
	if len(names) > 0 {
		o.Names = names
	}
	var srcs []transport.Source
	for _, a := range args {
		if _, _, err := parseRefArg(a); err != nil {
			return err
		}
		s, err := transport.ParseSource("oci:" + a)
		if err != nil {
			return usageError{err}
		}
		srcs = append(srcs, s)
	}
	dst, err := transport.ParseDestination(string(af) + ":" + out)
	if err != nil {
		return usageError{err}
	}
	if since != "" {
		ctx, cancel := signalContext()
		o.Since, err = transport.Inventory(ctx, since)
		cancel()
		if err != nil {
			return err
		}
	}
	return g.runCopy(transport.Join(srcs...), dst, o, "saved")
}
