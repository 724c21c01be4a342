package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/build"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// buildFlags are strata build's flags.
type buildFlags struct {
	file      string
	tags      []string
	outputs   []string
	buildArgs []string
	target    string
	platform  string
	noCache   bool
	driver    string
	timestamp string
	secrets   []string
	iidfile   string
	network   string
	cacheFrom []string
	cacheTo   []string
	reg       registryFlags
}

func newBuildCmd(g *globalFlags) *cobra.Command {
	f := &buildFlags{}
	c := &cobra.Command{
		Use:   "build [flags] CONTEXT",
		Short: "Build an image from a Containerfile (Dockerfile), with no daemon",
		Long: `Build the image CONTEXT/Containerfile (else CONTEXT/Dockerfile, or -f FILE)
describes, with Docker's semantics, and store it in layouts (-t
LAYOUT:REF) or copy it anywhere strata copy writes (--output). The image's
manifest digest is printed on stdout.

Every RUN, COPY, ADD and WORKDIR step is one layer, committed from a
working container in the snapshot store (--driver vfs or overlay, as
unpack); every other instruction changes only the config. Each step's
result is cached in the store (ROOT/build/cache) under a key made of its
parent, the instruction as expanded, the build args it sees and the
digest of the files COPY and ADD read: an unchanged rebuild runs nothing,
and changing one COPY source runs again from that step on. --cache-to
writes this build's steps as one image index (a layout or a registry
image) that --cache-from reads on another machine. strata build prune
removes the cache.

RUN --mount takes type=cache (kept in the store by id), type=bind (from
the context or a stage), type=tmpfs and type=secret (--secret
id=ID,src=FILE or id=ID,env=VAR: never written to a layer, the config or
the cache). With --timestamp or $SOURCE_DATE_EPOCH, history and creation
times are fixed and file mtimes clamped: the same context gives the same
digest.

As an unprivileged user the build runs in strata's user namespace: with
/etc/subuid and /etc/subgid ranges every owner is real; with the user
alone mapped, RUN runs as root and a chown to another ID fails inside the
step, as with buildah.`,
		Example: `  strata build -t ./img:app .
  strata build -f build/Containerfile --build-arg VERSION=1.2 -t ./img:app,app-1.2 .
  strata build --target test --output docker-archive:app.tar:app:latest .
  SOURCE_DATE_EPOCH=1700000000 strata build --driver overlay -t ./img:app .
  strata build --secret id=token,src=$HOME/.token --cache-to oci:./cache:build -t ./img:app .`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBuild(cmd, g, f, args[0])
		},
	}
	c.AddCommand(newBuildPruneCmd(g))
	fl := c.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "the Containerfile `FILE` (default: CONTEXT/Containerfile, else CONTEXT/Dockerfile)")
	fl.StringArrayVarP(&f.tags, "tag", "t", nil, "store the image as `LAYOUT:REF` (REF may be several names separated by commas; repeatable)")
	fl.StringArrayVarP(&f.outputs, "output", "o", nil, "copy the image to `TRANSPORT:NAME` (docker-archive:FILE:NAME:TAG, oci-archive:FILE, oci:DIR:REF, docker://REG/REPO:TAG; repeatable)")
	fl.StringArrayVar(&f.buildArgs, "build-arg", nil, "set a build arg `NAME=VALUE` (NAME alone: from the environment; repeatable)")
	fl.StringVar(&f.target, "target", "", "build the stage `NAME` (default: the last)")
	fl.StringVar(&f.platform, "platform", "", "target platform `os/arch[/variant]` (default: this machine's)")
	fl.BoolVar(&f.noCache, "no-cache", false, "run every step again (the results still go into the cache)")
	fl.StringVar(&f.driver, "driver", vfs.Name, "snapshot driver of the steps: `vfs` or overlay")
	fl.StringVar(&f.timestamp, "timestamp", "", "creation `time` of the image and its history, RFC 3339 or unix seconds, that also caps file mtimes (default: $SOURCE_DATE_EPOCH, else now, uncapped)")
	fl.StringArrayVar(&f.secrets, "secret", nil, "a secret for RUN --mount=type=secret: `id=ID,src=FILE` or id=ID,env=VAR (repeatable)")
	fl.StringVar(&f.iidfile, "iidfile", "", "write the image's manifest digest to `FILE`")
	fl.StringVar(&f.network, "network", "host", "network of RUN steps: `host` or none")
	fl.StringArrayVar(&f.cacheFrom, "cache-from", nil, "use the build cache a --cache-to wrote at `TRANSPORT:NAME` (a layout or registry image; repeatable)")
	fl.StringArrayVar(&f.cacheTo, "cache-to", nil, "write this build's cache as an image index to `TRANSPORT:NAME` (repeatable)")
	f.reg.add(fl)
	return c
}

// runBuild is strata build.
func runBuild(cmd *cobra.Command, g *globalFlags, f *buildFlags, contextDir string) error {
	o := build.Options{Context: contextDir, Containerfile: f.file, Target: f.target, NoCache: f.noCache,
		Tags: f.tags, Outputs: f.outputs, CacheFrom: f.cacheFrom, CacheTo: f.cacheTo, Network: f.network, Env: os.Environ()}
	if f.driver != vfs.Name && f.driver != "overlay" {
		return usagef("--driver %s: want vfs or overlay", f.driver)
	}
	if f.network != "host" && f.network != "none" {
		return usagef("--network %s: want host or none", f.network)
	}
	var err error
	if o.BuildArgs, err = parseBuildArgs(f.buildArgs); err != nil {
		return err
	}
	if o.Secrets, err = parseSecrets(f.secrets); err != nil {
		return err
	}
	if f.platform != "" {
		p, err := layout.ParsePlatform(f.platform)
		if err != nil {
			return usageError{err}
		}
		o.Platform = &p
	}
	if o.Timestamp, err = createdTime(cmd, "timestamp", f.timestamp); err != nil {
		return err
	}
	for _, t := range f.tags {
		if dir, _, _ := strings.Cut(t, ":"); dir == "" {
			return usagef("-t %s: want LAYOUT:REF", t)
		}
	}
	if userns.Needed() {
		// RUN steps and real owners need strata's namespace.
		if err := g.reexecInUserns(true); err != nil {
			return err
		}
	}
	o.Driver = overlayDisabled(f.driver)
	o.OnFallback = overlayFallback
	o.Registry = f.reg.options()
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	o.Store = s
	if !g.quiet {
		o.Stdout, o.Stderr = os.Stderr, os.Stderr
		o.Progress = buildProgress(os.Stderr)
	}
	ctx, cancel := signalContext()
	defer cancel()
	res, err := build.Build(ctx, o)
	if err != nil {
		return err
	}
	g.infof("built %s: %d steps, %d from the cache", res.Manifest.Digest, res.Steps, res.Cached)
	if f.iidfile != "" {
		if err := os.WriteFile(f.iidfile, []byte(res.Manifest.Digest.String()), 0o644); err != nil {
			return fmt.Errorf("--iidfile: %w", err)
		}
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Manifest.Digest)
	return nil
}

// buildProgress prints one line per step as it starts, and its end:
// "cached" or how long it took.
func buildProgress(w io.Writer) func(build.Event) {
	return func(e build.Event) {
		if !e.Done {
			fmt.Fprintf(w, "STEP %d/%d: %s\n", e.Step, e.Steps, firstLine(e.Instruction))
			return
		}
		if e.Cached {
			fmt.Fprintf(w, "--> cached\n")
			return
		}
		fmt.Fprintf(w, "--> %s\n", e.Took.Round(time.Millisecond))
	}
}

// firstLine shortens a multi-line instruction (a heredoc) to its first
// line.
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// parseBuildArgs reads --build-arg NAME=VALUE or NAME (the value then
// comes from the environment, and an unset NAME is left out).
func parseBuildArgs(in []string) (map[string]*string, error) {
	out := map[string]*string{}
	for _, a := range in {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, usagef("--build-arg %q: want NAME=VALUE", a)
		}
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		out[k] = &v
	}
	return out, nil
}

// parseSecrets reads --secret id=ID,src=FILE (also source=) or
// id=ID,env=VAR (the variable's value).
func parseSecrets(in []string) (map[string]build.Secret, error) {
	out := map[string]build.Secret{}
	for _, s := range in {
		var id, src, env string
		for _, f := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(f, "=")
			switch strings.ToLower(k) {
			case "id":
				id = v
			case "src", "source":
				src = v
			case "env":
				env = v
			case "type":
				if v != "file" && v != "env" {
					return nil, usagef("--secret %s: type %q: want file or env", s, v)
				}
			default:
				return nil, usagef("--secret %s: unknown field %q (want id=, src= or env=)", s, k)
			}
		}
		if id == "" {
			if src != "" {
				id = filepath.Base(src)
			} else {
				id = env
			}
		}
		if id == "" || (src == "" && env == "") {
			return nil, usagef("--secret %s: want id=ID,src=FILE or id=ID,env=VAR", s)
		}
		if src != "" {
			out[id] = build.Secret{File: src}
			continue
		}
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, usagef("--secret %s: $%s is not set", s, env)
		}
		out[id] = build.Secret{Data: []byte(v)}
	}
	return out, nil
}

func newBuildPruneCmd(g *globalFlags) *cobra.Command {
	var keepMounts bool
	c := &cobra.Command{
		Use:   "prune",
		Short: "Empty the build cache",
		Long: `Remove every step image of the build cache in the snapshot store
(--root), the FROM images builds pulled, the RUN --mount=type=cache
directories (unless --keep-mounts), what killed builds left, and then
every snapshot nothing else uses, as strata snapshots gc does.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := g.openStoreInUserns()
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := signalContext()
			defer cancel()
			res, err := build.Prune(ctx, s, keepMounts)
			if err != nil {
				return err
			}
			g.infof("removed %d cached images (%d blobs, %d bytes), %d cache mounts, %d snapshots", res.Images, res.Blobs, res.Bytes, res.Mounts, res.Snapshots)
			return nil
		},
	}
	c.Flags().BoolVar(&keepMounts, "keep-mounts", false, "keep the RUN --mount=type=cache directories")
	return c
}
