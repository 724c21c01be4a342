package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/transport"
)

// copyFlags are the image options copy, save and load share.
type copyFlags struct {
	g             *globalFlags
	format        string
	compression   string
	level         int
	force         bool
	platforms     []string
	allPlatforms  bool
	nameCanonical bool
	referrers     bool
}

// add registers the flags; formatFlag is the name of the manifest format
// flag (save uses --format for the archive format).
func (f *copyFlags) add(g *globalFlags, fs *pflag.FlagSet, formatFlag string) {
	f.g = g
	fs.StringVar(&f.format, formatFlag, "", "convert manifests and configs to `oci` or docker (schema2) media types")
	fs.StringVar(&f.compression, "compression", "", "recompress layers in another compression to `gzip`, zstd or none")
	fs.IntVar(&f.level, "compression-level", 0, "compression level for recompressed layers (0: the format's default)")
	fs.BoolVar(&f.force, "force-compression", false, "recompress layers even when already in the requested compression")
	fs.StringSliceVar(&f.platforms, "platform", nil, "copy only this `os/arch[/variant]` out of an index (repeat for several: a rewritten index)")
	fs.BoolVar(&f.allPlatforms, "all-platforms", false, "copy indexes whole, every platform")
	fs.BoolVar(&f.nameCanonical, "name-canonical", false, "also record each NAME as NAME@DIGEST")
	fs.BoolVar(&f.referrers, "referrers", false, "also copy the images' referrers (signatures, SBOMs, attestations, cosign's .sig/.att/.sbom), recursively")
}

// options turns the flags into transport options.
func (f *copyFlags) options(all bool) (transport.CopyOptions, error) {
	var o transport.CopyOptions
	o.All = all
	if f.allPlatforms && len(f.platforms) > 0 {
		return o, usagef("--platform and --all-platforms cannot be used together")
	}
	for _, s := range f.platforms {
		p, err := layout.ParsePlatform(s)
		if err != nil {
			return o, usageError{err}
		}
		o.Copy.Platforms = append(o.Copy.Platforms, p)
	}
	// Syncing a whole layout keeps its indexes unless platforms are named.
	o.Copy.AllPlatforms = f.allPlatforms || (all && len(f.platforms) == 0)
	o.Copy.OnBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
		f.g.debugf("%s %s (%d bytes): %s", d.MediaType, d.Digest, d.Size, how)
	}
	o.NameCanonical = f.nameCanonical
	format, err := layout.ParseFormat(f.format)
	if err != nil {
		return o, usageError{err}
	}
	var kind compression.Kind
	if f.compression != "" {
		if kind, err = compression.ParseKind(f.compression); err != nil {
			return o, usageError{err}
		}
	}
	if f.level != 0 && kind == "" && !f.force {
		return o, usagef("--compression-level needs --compression or --force-compression")
	}
	co := layout.ConvertOptions{Format: format, Compression: kind, Level: f.level, Force: f.force}
	o.Referrers = f.referrers
	if f.referrers && (co.Format != "" || co.Compression != "" || co.Force) {
		return o, usagef("--referrers cannot be used with a conversion: referrers name their image by digest, which a conversion changes")
	}
	if co.Format != "" || co.Compression != "" || co.Force {
		o.Convert = func(ctx context.Context, l *layout.Layout, d ocispec.Descriptor) (ocispec.Descriptor, error) {
			return layout.Convert(ctx, l, d, co)
		}
	}
	return o, nil
}

// signalContext is cancelled by SIGINT and SIGTERM, so that an interrupted
// copy removes its partial files.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// runCopy copies and reports what went where.
func (g *globalFlags) runCopy(src transport.Source, dst transport.Destination, o transport.CopyOptions, verb string) error {
	ctx, cancel := signalContext()
	defer cancel()
	p := g.newProgress()
	bar := p.Bytes("blobs", -1)
	onBlob := o.Copy.OnBlob
	o.Copy.OnBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
		bar.Add(d.Size)
		if onBlob != nil {
			onBlob(d, how)
		}
	}
	imgs, err := transport.Copy(ctx, src, dst, o)
	p.Wait()
	if err != nil {
		return err
	}
	for _, img := range imgs {
		for _, d := range img.Duplicates {
			warnDuplicate(d, src.String())
		}
		names := "(untagged)"
		if len(img.Names) > 0 {
			names = strings.Join(img.Names, ", ")
		}
		g.infof("%s %s to %s as %s%s", verb, img.Descriptor.Digest, dst, names, referrerNote(img.Referrers))
	}
	return nil
}

// referrerNote says how many referrers came along, for status lines.
func referrerNote(refs []layout.Referrer) string {
	switch len(refs) {
	case 0:
		return ""
	case 1:
		return " with 1 referrer"
	}
	return fmt.Sprintf(" with %d referrers", len(refs))
}

// warnDuplicate tells the user that a registry index lists several
// manifests for the platform pulled, and how to take another: its digest
// in place of the tag.
func warnDuplicate(d layout.DuplicatePlatform, src string) {
	repo := src
	if at := strings.LastIndexByte(repo, '@'); at >= 0 {
		repo = repo[:at]
	} else if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	fmt.Fprintf(os.Stderr, "strata: warning: %s (use %s@%s to take it instead)\n", d.String(), repo, d.Others[0].Digest)
}

func newCopyCmd(g *globalFlags) *cobra.Command {
	var (
		f   copyFlags
		reg registryFlags
		all bool
	)
	c := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy images between layouts and archives, converting them on the way",
		Long: `Copy an image from SRC to DST. Both are named as skopeo names them:

  oci:DIR[:REF]                    an OCI image layout (oci: may be left out)
  oci-archive:FILE[:REF]           a tar of an image layout
  docker-archive:FILE[:NAME:TAG]   the docker save format (docker load, podman load)
  docker://HOST/REPO[:TAG|@DIGEST] a registry; --insecure, --plain-http, --cert-dir
                                   and --authfile mean what they mean for pull and push

FILE "-" is stdin or stdout. Copying into an existing layout transfers
only the blobs it lacks; on one filesystem blobs are reflinked or
hardlinked. Every blob is verified. Written archives are deterministic and
docker-archives also hold an OCI layout, so every loader reads them.

Images keep their names unless DST names them; a DST may give several
comma-separated names (oci:DIR:v1,latest). With --all and an oci:DIR
source without REF, every image of the layout is copied with its names.
From an index the host platform's image is copied unless --platform or
--all-platforms says otherwise; --all keeps indexes whole.

--referrers also copies the referrers of what is copied (signatures,
SBOMs, attestations, and cosign's sha256-<hex>.sig/.att/.sbom tags), and
theirs, digests unchanged, so that signatures still verify: a layout keeps
them as untagged index.json entries, an archive in its OCI layout, a
registry through its referrers API or the fallback tag.`,
		Example: `  strata copy oci:./img:v1 oci:/mnt/usb/img
  strata copy --all ./img /mnt/usb/img
  strata copy ./img:v1 docker-archive:app.tar:example.com/app:1
  strata copy docker-archive:app.tar ./img:app
  strata copy --format docker --compression gzip ./img:v1 ./img:v1-docker`,
		Args: exactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			o, err := f.options(all)
			if err != nil {
				return err
			}
			o.Registry = reg.options()
			o.Partial = true // a delta bundle completes from a layout destination
			src, err := transport.ParseSource(args[0])
			if err != nil {
				return usageError{err}
			}
			dst, err := transport.ParseDestination(args[1])
			if err != nil {
				return usageError{err}
			}
			if strings.HasPrefix(args[1], "docker-archive:") && !f.allPlatforms {
				// A docker-archive holds one platform per image.
				o.Copy.AllPlatforms = false
			}
			defer reg.flushCache()
			return g.runCopy(src, dst, o, "copied")
		},
	}
	f.add(g, c.Flags(), "format")
	reg.add(c.Flags())
	c.Flags().BoolVar(&all, "all", false, "copy every image of an oci:DIR source given without REF, with its names")
	return c
}
