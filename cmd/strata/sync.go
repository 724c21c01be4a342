package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mirror"
	"github.com/vbauerster/mpb/v8/decor"
)

// syncFlags are sync's flags.
type syncFlags struct {
	reg          registryFlags
	fromFile     string
	tags         string
	platforms    []string
	allPlatforms bool
	jobs         int
	dryRun       bool
	asJSON       bool
	scoped       bool
	referrers    bool
}

func newSyncCmd(g *globalFlags) *cobra.Command {
	var f syncFlags
	c := &cobra.Command{
		Use:   "sync [flags] SOURCE... DEST",
		Short: "Copy many images into one layout, archive or registry, and keep it up to date",
		Long: `Copy every image of the SOURCEs to DEST. A SOURCE is

  docker://HOST/REPO               every tag of a repository (--tags REGEX: those matching)
  docker://HOST/REPO:TAG, @DIGEST  one registry image
  oci:DIR[:REF], DIR               every image of a layout, with its names (or REF)
  oci-archive:FILE, docker-archive:FILE   every image of an archive

or the images of --from-file LIST, a YAML list as skopeo sync --src yaml
reads it (registries, then images, images-by-tag-regex, images-by-semver,
credentials, tls-verify, cert-dir; and platforms, strata's). DEST is

  oci:DIR, DIR                     a layout: each image under its full name
                                   (registry.example/team/app:v1), blobs shared
  oci-archive:FILE, docker-archive:FILE   an archive of every image, written whole
  docker://REGISTRY[/PREFIX]       a registry: REGISTRY/PREFIX/app:v1 for
                                   registry.example/team/app:v1 (--scoped:
                                   REGISTRY/PREFIX/registry.example/team/app:v1)

Multi-platform images are copied whole unless --platform cuts them (a
docker-archive takes the host's platform). Manifests and indexes are
copied byte for byte, so digests stay the same and signatures still verify;
their referrers (signatures, SBOMs, attestations, cosign's tags) come along
unless --referrers=false.

A second run moves nothing it has: an unchanged tag costs one request to
the registry, blobs DEST holds are neither fetched nor uploaded, and an
interrupted run resumes from what it had verified. --dry-run says what
would move, and its size. Each image is reported on stdout (--json: one
summary).`,
		Example: `  strata sync docker://registry.example/team/app /mnt/usb/images
  strata sync --tags '^v1\.' docker://registry.example/team/app docker://mirror.local/team
  strata sync --from-file images.yaml --platform linux/amd64 oci-archive:/mnt/usb/images.tar
  strata sync /mnt/usb/images docker://registry.airgap.local/mirror`,
		Args: func(c *cobra.Command, args []string) error {
			if f.fromFile != "" {
				return minArgs(1)(c, args)
			}
			return minArgs(2)(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			return runSync(c, g, &f, args)
		},
	}
	fl := c.Flags()
	f.reg.add(fl)
	fl.StringVar(&f.fromFile, "from-file", "", "also copy the images of the YAML list `FILE` (skopeo sync's format)")
	fl.StringVar(&f.tags, "tags", "", "copy only the tags matching `REGEX` of the repositories given as SOURCE")
	fl.StringSliceVar(&f.platforms, "platform", nil, "copy only `OS/ARCH[/VARIANT]` out of multi-platform images (repeat for several)")
	fl.BoolVar(&f.allPlatforms, "all-platforms", true, "copy multi-platform images whole (the default, unless --platform)")
	fl.IntVarP(&f.jobs, "jobs", "j", 4, "move `N` images, and N blobs of each, at once")
	fl.BoolVar(&f.dryRun, "dry-run", false, "say what would move, and its size, and move nothing")
	fl.BoolVar(&f.asJSON, "json", false, "print a JSON summary on stdout")
	fl.BoolVar(&f.scoped, "scoped", false, "name images pushed to a registry by their whole source name")
	fl.BoolVar(&f.referrers, "referrers", true, "carry each image's referrers (signatures, SBOMs, attestations, cosign's tags) along")
	return c
}

func runSync(c *cobra.Command, g *globalFlags, f *syncFlags, args []string) error {
	if c.Flags().Changed("all-platforms") && f.allPlatforms && len(f.platforms) > 0 {
		return usagef("--platform and --all-platforms exclude each other")
	}
	if f.jobs < 1 {
		return usagef("--jobs must be at least 1, got %d", f.jobs)
	}
	var srcs []mirror.Source
	var tags *regexp.Regexp
	if f.tags != "" {
		re, err := regexp.Compile(f.tags)
		if err != nil {
			return usagef("--tags %q: %v", f.tags, err)
		}
		tags = re
	}
	dest := args[len(args)-1]
	for _, a := range args[:len(args)-1] {
		srcs = append(srcs, mirror.Source{Ref: a, Tags: tags})
	}
	if f.fromFile != "" {
		fh, err := os.Open(f.fromFile)
		if err != nil {
			return usageError{err}
		}
		list, err := mirror.ReadList(fh)
		fh.Close()
		if err != nil {
			return usageError{fmt.Errorf("%s: %w", f.fromFile, err)}
		}
		srcs = append(srcs, list...)
	}
	o := mirror.Options{Jobs: f.jobs, DryRun: f.dryRun, Scoped: f.scoped, Referrers: f.referrers, Registry: f.reg.options()}
	defer f.reg.flushCache()
	for _, s := range f.platforms {
		p, err := layout.ParsePlatform(s)
		if err != nil {
			return usageError{err}
		}
		o.Platforms = append(o.Platforms, p)
	}
	report, done := g.transferProgress("copied")
	o.Progress = report
	o.OnBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
		g.debugf("%s %s (%d bytes): %s", d.MediaType, d.Digest, d.Size, how)
	}
	out := c.OutOrStdout()
	if !f.asJSON {
		o.OnImage = func(r mirror.Result) { printSyncResult(out, r) }
	}
	ctx, cancel := signalContext()
	defer cancel()
	sum, err := mirror.Sync(ctx, srcs, dest, o)
	done()
	if sum != nil && f.asJSON {
		b, jerr := json.MarshalIndent(sum, "", "  ")
		if jerr != nil {
			return fmt.Errorf("encode summary: %w", jerr)
		}
		fmt.Fprintf(out, "%s\n", b)
	}
	if err != nil {
		return err
	}
	if !f.asJSON {
		verb := "synced"
		if f.dryRun {
			verb = "would sync"
		}
		g.infof("%s %d image(s) to %s: %d copied, %d unchanged; %d blob(s), %s moved",
			verb, len(sum.Images), dest, sum.Copied, sum.Unchanged, sum.Blobs, sizeString(sum.Bytes))
	}
	return nil
}

func printSyncResult(w io.Writer, r mirror.Result) {
	name := r.Name
	if name == "" {
		name = "<none>"
	}
	what := string(r.Status)
	if r.Status == mirror.Planned {
		what = "would copy"
	}
	fmt.Fprintf(w, "%-10s %s %s (%s): %d blob(s), %s\n", what, name, r.Digest, r.Source, r.Blobs, sizeString(r.Bytes))
}

func sizeString(n int64) string { return fmt.Sprintf("%.1f", decor.SizeB1024(n)) }
