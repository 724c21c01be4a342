package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
)

// commitOptions are the flags of strata commit.
type commitOptions struct {
	newImageFlags
	createdBy string
	timestamp string
}

func newCommitCmd(g *globalFlags) *cobra.Command {
	var o commitOptions
	c := &cobra.Command{
		Use:   "commit [flags] DIR LAYOUT[:REF]",
		Short: "Make a new image from what changed in an unpacked bundle",
		Long: `Turn what changed in DIR/rootfs since strata unpack (or the last commit)
into a new layer on top of the bundle's image, as docker commit does, and
store the new image in LAYOUT (created if needed), named REF or, with no
REF, untagged. The manifest digest is printed on stdout.

A bundle unpacked with --driver overlay is diffed from its upper directory
alone; a vfs bundle is compared with the file list recorded at unpack, and
only files whose metadata changed are read. Deleted files become
whiteouts, hardlinks stay hardlinks. Nothing changed: no layer is added,
only a history entry marked empty_layer. A bundle unpacked with
--uid-map/--gid-map has owners (and file capabilities) shifted back to the
image's IDs; a file owned by a host ID outside the map is an error.

Afterwards DIR works on top of the new image (an overlay rootfs gets a new,
empty upper directory), so commits stack into a multi-layer image. Stop
the container first: commit does not pause it.

--change applies Dockerfile instructions to the config, as in strata
import. With --timestamp or $SOURCE_DATE_EPOCH the image's creation time is
fixed and file mtimes later than it are clamped to it, so the same change
gives the same layer digest on every run.`,
		Example: `  strata unpack ./img:v1 ./bundle
  runc run -b ./bundle build && strata commit -m 'install tools' ./bundle ./img:v2
  strata commit -c 'CMD ["/app"]' -c 'ENV MODE=prod' ./bundle ./img:v3
  SOURCE_DATE_EPOCH=1700000000 strata commit --compression zstd ./bundle ./img:v4`,
		Args: exactArgs(2),
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return completeDirs(cmd, args, toComplete)
			case 1:
				return refCompletions(toComplete)
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runCommit(cmd, o, args[0], args[1])
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&o.changes, "change", "c", nil, "apply a Dockerfile `instruction` to the config (repeatable)")
	fl.StringVarP(&o.message, "message", "m", "", "history comment for the layer")
	fl.StringVar(&o.author, "author", "", "author of the image (default: the parent image's)")
	fl.StringVar(&o.createdBy, "created-by", "", "history created_by `text` (default: the bundle's process command)")
	fl.StringVar(&o.compress, "compression", "gzip", "layer compression: `gzip`, zstd or none")
	fl.IntVar(&o.level, "compression-level", 0, "compression level (0: the format's default)")
	fl.StringVar(&o.timestamp, "timestamp", "", "creation `time`, RFC 3339 or unix seconds, that also caps file mtimes (default: $SOURCE_DATE_EPOCH, else now, uncapped)")
	return c
}

// runCommit commits the bundle bundleDir into the image target
// (LAYOUT[:REF]) names and prints the new manifest's digest.
func (g *globalFlags) runCommit(cmd *cobra.Command, o commitOptions, bundleDir, target string) error {
	dir, ref, err := parseNewImageArg("commit", target)
	if err != nil {
		return err
	}
	co, err := o.bundleOptions(cmd)
	if err != nil {
		return err
	}
	rec, err := bundle.ReadRecord(bundleDir)
	if err != nil {
		return err
	}
	if err := g.checkBundleRoot(rec, bundleDir); err != nil {
		return err
	}
	if bundleNeedsUserns(rec) {
		return g.reexecInUserns(false)
	}
	if !cmd.Flags().Changed("created-by") {
		co.CreatedBy = bundleCommand(bundleDir)
	}
	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	prog := g.newProgress()
	co.Progress = func(r io.Reader) io.Reader { return prog.Reader("commit "+filepath.Base(bundleDir), -1, r) }
	co.Ref = ref
	res, err := bundle.Commit(cmd.Context(), bundleDir, l, co)
	prog.Wait()
	if err != nil {
		u, uerr := l.Undo()
		return fmt.Errorf("%w%s", err, undoNote(dir, u, uerr))
	}
	l.Close()
	name := dir + ":" + ref
	if ref == "" {
		name = dir + "@" + res.Manifest.Digest.String() + " (untagged)"
	}
	if res.Layer == nil {
		g.infof("committed %s: no changes, empty layer recorded in history", name)
	} else {
		g.infof("committed %s: layer %s (%d entries, %d bytes %s), diffID %s", name, res.Layer.Descriptor.Digest, res.Entries, res.Layer.Descriptor.Size, co.Compression, res.Layer.DiffID)
	}
	fmt.Fprintln(cmd.OutOrStdout(), res.Manifest.Digest)
	return nil
}

// bundleOptions checks the flags of cmd and turns them into the options
// of a commit, all but its Ref and Progress.
func (o commitOptions) bundleOptions(cmd *cobra.Command) (bundle.CommitOptions, error) {
	kind, err := compression.ParseKind(o.compress)
	if err != nil {
		return bundle.CommitOptions{}, usageError{err}
	}
	lvl, err := compressionLevel(kind, o.level)
	if err != nil {
		return bundle.CommitOptions{}, err
	}
	when, err := createdTime(cmd, "timestamp", o.timestamp)
	if err != nil {
		return bundle.CommitOptions{}, err
	}
	host, err := layout.ParsePlatform("")
	if err != nil {
		return bundle.CommitOptions{}, err
	}
	if err := dockerfile.Apply(layout.NewConfig(host), o.changes); err != nil {
		return bundle.CommitOptions{}, usageError{err}
	}
	return bundle.CommitOptions{
		Author:      o.author,
		Comment:     o.message,
		CreatedBy:   o.createdBy,
		Edit:        func(c *layout.Config) error { return dockerfile.Apply(c, o.changes) },
		Compression: kind,
		Level:       lvl,
		Timestamp:   when,
		// Who commits: the bundle's owners are read back through it.
		StoreOptions: storeOptions(),
	}, nil
}

// The demo's bundle and snapshot store live inside its layout directory.
const (
	demoBundle   = "demo-bundle"
	demoStore    = "demo-snapshots"
	demoCommitTo = "demo-v2"
	demoArchive  = "demo-docker.tar"
)

func demoUnpack(d *demoRun) error {
	// A kept layout may hold the bundle of an earlier demo: start afresh.
	for _, n := range []string{demoBundle, demoStore, demoArchive} {
		if err := fsx.RemoveAll(filepath.Join(d.dir, n)); err != nil {
			return err
		}
	}
	s, err := snapshot.Open(filepath.Join(d.dir, demoStore), storeOptions())
	if err != nil {
		return err
	}
	defer s.Close()
	bundleDir := filepath.Join(d.dir, demoBundle)
	rec, err := bundle.Unpack(context.Background(), s, d.l, demoRef, bundleDir, bundle.UnpackOptions{})
	if err != nil {
		return err
	}
	d.say("%s/rootfs     the image's files (%s driver; snapshots in %s)", rec.Dir, rec.Driver, filepath.Join(d.dir, demoStore))
	d.say("%s/config.json a runtime spec: runc run -b %s NAME runs %s", rec.Dir, rec.Dir, "/bin/hello")
	return nil
}

func demoChange(d *demoRun) error {
	rootfs := filepath.Join(d.dir, demoBundle, snapshot.RootfsDir)
	msg := filepath.Join(rootfs, "etc", "motd")
	if err := os.WriteFile(msg, []byte("committed by strata demo\n"), 0o644); err != nil {
		return err
	}
	readme := filepath.Join(rootfs, "usr", "share", "doc", "strata-demo", "README")
	if err := os.Remove(readme); err != nil {
		return err
	}
	// Fixed times, so that the commit is reproducible too.
	for _, p := range []string{msg, filepath.Dir(msg), filepath.Dir(readme)} {
		if err := os.Chtimes(p, demoEpoch, demoEpoch); err != nil {
			return err
		}
	}
	d.say("added   /etc/motd")
	d.say("removed /usr/share/doc/strata-demo/README")
	return nil
}

func demoCommit(d *demoRun) error {
	when := demoEpoch.Add(time.Hour)
	res, err := bundle.Commit(context.Background(), filepath.Join(d.dir, demoBundle), d.l, bundle.CommitOptions{
		Ref:       demoCommitTo,
		Comment:   "add /etc/motd, drop the README",
		CreatedBy: "strata demo",
		Timestamp: &when,
		Edit:      func(c *layout.Config) error { return dockerfile.Apply(c, []string{`LABEL stage=committed`}) },

		StoreOptions: storeOptions(),
	})
	if err != nil {
		return err
	}
	d.say("Only what changed goes into the layer: the new file, a whiteout for")
	d.say("the deleted one, and their parent directories (%d entries):", res.Entries)
	d.say("  layer    %s (%d bytes)", res.Layer.Descriptor.Digest, res.Layer.Descriptor.Size)
	d.say("  diffID   %s", res.Layer.DiffID)
	d.say("  manifest %s, named %q", res.Manifest.Digest, demoCommitTo)
	d.say("The bundle now works on top of %q: commit again and layers stack.", demoCommitTo)
	return nil
}

func demoSave(d *demoRun) error {
	var imgs []archive.Image
	for _, ref := range []string{demoRef, demoCommitTo} {
		desc, err := d.l.Resolve(ref)
		if err != nil {
			return err
		}
		imgs = append(imgs, archive.Image{Descriptor: desc, Names: []string{"strata-" + ref + ":latest"}})
	}
	p := filepath.Join(d.dir, demoArchive)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	err = archive.Write(context.Background(), f, d.l, archive.Docker, imgs)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", p, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	d.say("%s (%d bytes): docker load -i %s", p, fi.Size(), p)
	d.say("loads strata-%s:latest and strata-%s:latest; the second shares the first's layer.", demoRef, demoCommitTo)
	return nil
}

// bundleCommand is the bundle's process command line, as docker commit
// records the container's command in created_by.
func bundleCommand(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, bundle.SpecFile))
	if err != nil {
		return "strata commit"
	}
	var spec struct {
		Process *struct {
			Args []string `json:"args"`
		} `json:"process"`
	}
	if json.Unmarshal(b, &spec) != nil || spec.Process == nil || len(spec.Process.Args) == 0 {
		return "strata commit"
	}
	return strings.Join(spec.Process.Args, " ")
}
