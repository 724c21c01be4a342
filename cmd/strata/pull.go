package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/vbauerster/mpb/v8"
)

// transferFlags are the flags pull and push share beyond the connection.
type transferFlags struct {
	registryFlags
	g            *globalFlags
	platforms    []string
	allPlatforms bool
	jobs         int
	referrers    bool
}

// add registers the flags. A push sends a multi-platform image whole
// unless --platform narrows it, so it has no --all-platforms.
func (f *transferFlags) add(g *globalFlags, fs *pflag.FlagSet, push bool) {
	f.g = g
	f.registryFlags.add(fs)
	if push {
		fs.StringSliceVar(&f.platforms, "platform", nil, "push only `OS/ARCH[/VARIANT]` out of a multi-platform image (default: all of it; several make a new index)")
	} else {
		fs.StringSliceVar(&f.platforms, "platform", nil, "select `OS/ARCH[/VARIANT]` from a multi-platform image (default: the host's; several make a new index)")
		fs.BoolVar(&f.allPlatforms, "all-platforms", false, "copy a multi-platform image whole, index included")
	}
	fs.IntVarP(&f.jobs, "jobs", "j", 4, "move `N` blobs at once")
	fs.BoolVar(&f.referrers, "referrers", false, "also copy the image's referrers (signatures, SBOMs, attestations, cosign's .sig/.att/.sbom tags), recursively")
}

func (f *transferFlags) options(what string) ([]remote.Option, func(), error) {
	opts := f.registryFlags.options()
	if f.allPlatforms && len(f.platforms) > 0 {
		return nil, nil, usagef("--platform and --all-platforms exclude each other")
	}
	if f.jobs < 1 {
		return nil, nil, usagef("--jobs must be at least 1, got %d", f.jobs)
	}
	for _, s := range f.platforms {
		p, err := layout.ParsePlatform(s)
		if err != nil {
			return nil, nil, usageError{err}
		}
		opts = append(opts, remote.WithPlatform(p))
	}
	if f.allPlatforms {
		opts = append(opts, remote.WithAllPlatforms())
	}
	opts = append(opts, remote.WithConcurrency(f.jobs))
	if f.referrers {
		opts = append(opts, remote.WithReferrers())
	}
	report, done := f.g.transferProgress(what)
	opts = append(opts, remote.WithProgress(report))
	return opts, done, nil
}

// transferProgress draws a bar per blob on a terminal, or prints a line
// per finished blob elsewhere (unless --quiet).
func (g *globalFlags) transferProgress(what string) (func(remote.Progress), func()) {
	p := g.newProgress()
	var (
		mu   sync.Mutex
		bars = map[string]*mpb.Bar{}
	)
	report := func(ev remote.Progress) {
		d := ev.Descriptor
		short := d.Digest.Encoded()
		if len(short) > 12 {
			short = short[:12]
		}
		if p.active() {
			mu.Lock()
			defer mu.Unlock()
			b, ok := bars[d.Digest.String()]
			if !ok {
				b = p.byteBar(fmt.Sprintf("%s %s", kindOfBlob(d.MediaType), short), d.Size)
				bars[d.Digest.String()] = b
			}
			b.SetCurrent(ev.Bytes)
			return
		}
		switch ev.State {
		case remote.StateDone:
			g.infof("%s %s %s (%d bytes)", what, kindOfBlob(d.MediaType), d.Digest, d.Size)
		case remote.StateExists:
			g.infof("exists %s %s", kindOfBlob(d.MediaType), d.Digest)
		case remote.StateMounted:
			g.infof("mounted %s %s", kindOfBlob(d.MediaType), d.Digest)
		}
	}
	return report, p.Wait
}

// holdsFiles says whether any of dirs holds a regular file, at any depth.
func holdsFiles(dirs ...string) bool {
	found := false
	for _, d := range dirs {
		_ = filepath.WalkDir(d, func(_ string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
	}
	return found
}

func kindOfBlob(mt string) string {
	switch {
	case layout.IsIndex(mt):
		return "index"
	case layout.IsManifest(mt):
		return "manifest"
	case layout.IsConfig(mt):
		return "config"
	case layout.IsLayer(mt):
		return "layer"
	}
	return "blob"
}

// pullOptions are the flags of strata pull.
type pullOptions struct {
	transferFlags
	mode string
}

func newPullCmd(g *globalFlags) *cobra.Command {
	var o pullOptions
	c := &cobra.Command{
		Use:   "pull [flags] [docker://]HOST/REPO[:TAG|@DIGEST] LAYOUT[:NAME]",
		Short: "Copy an image from a registry into a layout",
		Long: `Copy an image from a registry into an OCI image layout (created if needed)
and name it NAME there; without NAME it is named by its full reference
(docker.io/library/busybox:latest). Names without a registry are Docker Hub
names. Without --all-platforms, one platform's manifest is copied out of a
multi-platform image (the host's, or --platform).

Blobs the layout already holds are not downloaded again, so a pull that was
interrupted resumes where it stopped. Every blob is verified before it
becomes visible, and the name is set only once the whole image is there.
The pulled image's digest is printed on stdout.

--referrers also pulls the image's referrers (the registry's referrers
API, or its sha256-<hex> fallback tag, and cosign's .sig, .att and .sbom
tags), recursively, and records them beside it.

Credentials come from $DOCKER_CONFIG/config.json or ~/.docker/config.json
(and the credential helpers it names); see strata login.`,
		Example: `  strata pull busybox:1.36 ./images:busybox
  strata pull --all-platforms docker://localhost:5000/app:v2 ./images
  strata pull --pull missing --platform linux/arm64 ghcr.io/org/tool:1 ./images:tool`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runPull(cmd.Context(), cmd.OutOrStdout(), &o, args[0], args[1])
		},
	}
	o.add(g, c.Flags(), false)
	c.Flags().StringVar(&o.mode, "pull", string(remote.PullAlways), "when to contact the registry, `MODE` always, missing (only when the layout lacks the image), newer (fetch only when the registry's digest differs from the layout's) or never")
	return c
}

// runPull pulls the image src names from its registry into the layout
// target (LAYOUT[:NAME]) names and prints its digest on out.
func (g *globalFlags) runPull(ctx context.Context, out io.Writer, o *pullOptions, src, target string) error {
	pm, err := remote.ParsePullMode(o.mode)
	if err != nil {
		return usageError{err}
	}
	if _, err := remote.ParseReference(src); err != nil {
		return usageError{err}
	}
	dir, name, err := parseRefArg(target)
	if err != nil {
		return err
	}
	opts, done, err := o.options("pulled")
	if err != nil {
		return err
	}
	opts = append(opts, remote.WithPullMode(pm))
	var l *layout.Layout
	if pm == remote.PullNever {
		l, err = layout.Open(dir)
	} else {
		l, err = layout.Init(dir)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	// Ctrl-C stops the transfer cleanly (ctx); what was downloaded and
	// verified is kept for the next pull.
	res, err := remote.Pull(ctx, l, src, name, opts...)
	done()
	o.flushCache()
	if err != nil {
		if l.Created() && !holdsFiles(filepath.Join(dir, layout.BlobsDir), remote.PartialDir(l)) {
			// Nothing came: do not leave behind a layout the user
			// did not have (unless another process has used it
			// meanwhile: see layout.Undo).
			u, uerr := l.Undo()
			return fmt.Errorf("%w%s", err, undoNote(dir, u, uerr))
		}
		return err
	}
	for _, d := range res.Duplicates {
		warnDuplicate(d, res.Reference.Name())
	}
	if res.UpToDate {
		g.infof("%s:%s is present (pull mode %s)", dir, res.Name, pm)
	} else {
		g.infof("pulled %s into %s:%s%s", res.Reference, dir, res.Name, referrerNote(res.Referrers))
	}
	fmt.Fprintln(out, res.Descriptor.Digest)
	return nil
}
