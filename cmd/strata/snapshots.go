package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
)

func newSnapshotsCmd(g *globalFlags) *cobra.Command {
	var asJSON, noTrunc bool
	c := &cobra.Command{
		Use:   "snapshots",
		Short: "List, verify, remove and garbage-collect extracted layers",
		Long: `List the snapshots of the store (--root): one per extracted layer and
driver, keyed by chain ID, with its driver, how its files carry the image's
owners (image: as they are; xattr: the user's files, owners in the
user.rootlesscontainers xattr; userns: the owners strata's user namespace
maps), unpacked size (the files of the root file system up to that layer,
with vfs; of the layer alone, with overlay), file count and the number of
unpacked bundles using it. Where several drivers hold a chain, name one
snapshot as KEY/ID (the "name" the --json listing gives).`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return g.runSnapshots(c.OutOrStdout(), asJSON, noTrunc)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the listing as JSON")
	c.Flags().BoolVar(&noTrunc, "no-trunc", false, "print full IDs")
	c.AddCommand(newSnapshotsRmCmd(g), newSnapshotsGCCmd(g), newSnapshotsVerifyCmd(g))
	return c
}

// runSnapshots lists the store's snapshots, as a table or as JSON.
func (g *globalFlags) runSnapshots(out io.Writer, asJSON, noTrunc bool) error {
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	infos, err := s.List()
	if err != nil {
		return err
	}
	users, err := bundle.Users(s)
	if err != nil {
		return err
	}
	if asJSON {
		return printSnapshotsJSON(out, infos, users)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tPARENT\tDRIVER\tOWNERS\tSIZE\tFILES\tBUNDLES\tCREATED")
	for _, in := range infos {
		id, parent := in.ID, "-"
		if in.Parent != "" {
			parent = in.Parent.String()
		}
		if !noTrunc {
			id, parent = shortDigest(id), shortDigest(parent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", id, parent, in.Driver, snapshot.OwnersKind(in.Owners),
			humanSize(in.Size), in.Files, len(users[in.Name()]), in.Created.Format("2006-01-02 15:04:05"))
	}
	return tw.Flush()
}

// printSnapshotsJSON prints the listing of snapshots --json asks for;
// users are the bundles using each, by snapshot name.
func printSnapshotsJSON(out io.Writer, infos []*snapshot.Info, users map[string][]string) error {
	type row struct {
		*snapshot.Info
		Name    string   `json:"name"`
		Kind    string   `json:"ownersKind"`
		Dir     string   `json:"dir"`
		Bundles []string `json:"bundles"`
	}
	rows := []row{}
	for _, in := range infos {
		rows = append(rows, row{in, in.Name(), snapshot.OwnersKind(in.Owners), in.Dir, users[in.Name()]})
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

func newSnapshotsRmCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Remove snapshots no unpacked bundle uses",
		Long: `Remove snapshots by ID (full, or a unique prefix of 12 or more hex
digits), or KEY/ID where several drivers hold the chain. A snapshot a live
bundle uses, or an overlay snapshot is built on, is refused: delete the
bundle directory first.`,
		Aliases: []string{"remove"},
		Args:    minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.runSnapshotsRm(args)
		},
	}
}

// runSnapshotsRm removes the snapshots named by args.
func (g *globalFlags) runSnapshotsRm(args []string) error {
	s, err := g.openStoreInUserns()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := bundle.Remove(s, args...); err != nil {
		return err
	}
	g.infof("removed %d snapshot(s)", len(args))
	return nil
}

func newSnapshotsGCCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove snapshots no bundle and no image uses",
		Long: `Remove every snapshot that is not used. A snapshot is used when
  - a bundle unpacked from this store still exists (its
    DIR/.strata-unpack.json names the store) and its image has the layer,
  - an image of a layout this store has unpacked from (any tag, any
    platform) has the layer, while the layout exists, or
  - an overlay snapshot in use is built on it.
Interrupted extractions in the store's tmp/ are removed too.`,
		Args: exactArgs(0),
		RunE: func(c *cobra.Command, args []string) error {
			return g.runSnapshotsGC(c.Context(), c.OutOrStdout())
		},
	}
}

// runSnapshotsGC removes the snapshots nothing uses and prints their
// names on out.
func (g *globalFlags) runSnapshotsGC(ctx context.Context, out io.Writer) error {
	s, err := g.openStoreInUserns()
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := bundle.GC(ctx, s)
	if err != nil {
		return err
	}
	for _, in := range res.Removed {
		fmt.Fprintf(out, "removed %s\n", in.Name())
	}
	g.infof("removed %d snapshot(s), %s; %d in use", len(res.Removed), humanSize(res.Bytes), res.Kept)
	return nil
}

func newSnapshotsVerifyCmd(g *globalFlags) *cobra.Command {
	var platform string
	c := &cobra.Command{
		Use:   "verify ID|LAYOUT:REF...",
		Short: "Rebuild layers from snapshots and check their diffIDs",
		Long: `Rebuild the exact uncompressed layer of each snapshot from its files and
its recorded tar-split metadata, and check it against the layer's diffID:
this proves the extracted files are unchanged. A LAYOUT:REF argument
verifies every snapshot of that image, of every driver.`,
		Args: minArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return g.runSnapshotsVerify(c.Context(), c.OutOrStdout(), platform, args)
		},
	}
	c.Flags().StringVar(&platform, "platform", "", "image platform `os/arch[/variant]` of an index (default: this machine's)")
	return c
}

// runSnapshotsVerify rebuilds the layer of each snapshot args name (by
// ID, or every one of an image) and checks it against its diffID.
func (g *globalFlags) runSnapshotsVerify(ctx context.Context, out io.Writer, platform string, args []string) error {
	s, err := g.openStoreInUserns()
	if err != nil {
		return err
	}
	defer s.Close()
	var infos []*snapshot.Info
	for _, a := range args {
		var found []*snapshot.Info
		if strings.Contains(a, ":") && !strings.HasPrefix(a, "sha256:") {
			found, err = imageSnapshots(s, a, platform)
		} else {
			var in *snapshot.Info
			in, err = s.Get(a)
			found = []*snapshot.Info{in}
		}
		if err != nil {
			return err
		}
		infos = append(infos, found...)
	}
	for _, in := range infos {
		if err := in.Verify(ctx); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s ok %s\n", in.Name(), in.DiffID)
	}
	return nil
}

// imageSnapshots is every snapshot of s, of any driver, of the layers of
// the image arg (LAYOUT:REF) names for platform ("": this machine's).
func imageSnapshots(s *snapshot.Store, arg, platform string) ([]*snapshot.Info, error) {
	l, ref, err := openLayoutRef(arg)
	if err != nil {
		return nil, err
	}
	var plat *ocispec.Platform
	if platform != "" {
		p, err := layout.ParsePlatform(platform)
		if err != nil {
			l.Close()
			return nil, usageError{err}
		}
		plat = &p
	}
	img, err := l.Image(ref, plat)
	l.Close()
	if err != nil {
		return nil, err
	}
	var infos []*snapshot.Info
	for i, id := range snapshot.ChainIDs(img.Config.RootFS.DiffIDs) {
		found, err := s.Find(id)
		if err != nil {
			return nil, err
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s: layer %d: snapshot %s: %w (unpack it first)", arg, i+1, id.Encoded(), snapshot.ErrNotFound)
		}
		infos = append(infos, found...)
	}
	return infos, nil
}
