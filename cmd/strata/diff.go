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

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layer/merge"
)

func newDiffCmd(g *globalFlags) *cobra.Command {
	var asJSON, layers bool
	var platform string
	c := &cobra.Command{
		Use:   "diff [flags] A B",
		Short: "List the files added, deleted and changed from one image (or bundle) to another",
		Long: `List what differs from A to B, as podman diff does: "A PATH" for a file B
adds (and everything under an added directory), "D PATH" for a file B
lacks (a deleted directory alone), "C PATH" for a file whose type, mode,
owner, size, content, symlink target, device numbers or xattrs differ
(mtimes alone do not count), and for each directory that holds such a
change. Paths come in tree order.

A and B are images: LAYOUT[:REF] (or oci:LAYOUT[:REF]),
oci-archive:FILE[:REF], docker-archive:FILE[:NAME:TAG] (read into a
private layout, removed afterwards), or bundles: a DIR strata unpack
made, compared as its rootfs is now (its image, with the changes commit
would find). Nothing is unpacked: each image's layer headers are read,
and contents are compared by sha256 only where sizes match and the files
do not come from one entry of a layer both images share.

--layer shows which layer of B made each change (the one that put the
file there, or removed it: its index from 0 and digest; "rootfs" for a
bundle's own changes). --json prints every change in detail: what
differs, the layer, both files' type, mode, owner, size, content digest,
link target, device, mtime and xattrs.`,
		Example: `  strata diff ./img:v1 ./img:v2
  strata diff --layer ./img:base ./img:app
  strata diff --json ./img:v1 ./bundle
  strata diff docker-archive:old.tar oci-archive:new.tar`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeRefArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runDiff(cmd, args[0], args[1], platform, asJSON, layers)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the changes in detail as JSON")
	c.Flags().BoolVar(&layers, "layer", false, "show which layer of B made each change")
	c.Flags().StringVar(&platform, "platform", "", "image platform `os/arch[/variant]` of an index, for both sides (default: this machine's)")
	return c
}

// isBundle says whether arg is a bundle directory strata unpacked.
func isBundle(arg string) bool {
	_, err := os.Stat(filepath.Join(arg, bundle.RecordFile))
	return err == nil
}

func (g *globalFlags) runDiff(cmd *cobra.Command, a, b, platform string, asJSON, layers bool) error {
	o, err := openOptions(platform)
	if err != nil {
		return err
	}
	for _, arg := range []string{a, b} {
		if !isBundle(arg) {
			continue
		}
		rec, err := bundle.ReadRecord(arg)
		if err != nil {
			return err
		}
		if err := g.checkBundleRoot(rec, arg); err != nil {
			return err
		}
		if bundleNeedsUserns(rec) {
			return g.reexecInUserns(false)
		}
	}
	limitMemory()
	ctx, cancel := signalContext()
	defer cancel()
	ta, closeA, err := diffTree(ctx, a, o, false)
	if err != nil {
		return err
	}
	defer closeA()
	tb, closeB, err := diffTree(ctx, b, o, true)
	if err != nil {
		return err
	}
	defer closeB()
	changes, err := merge.Compare(ctx, ta, tb)
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	if asJSON {
		return printDiffJSON(w, changes, tb)
	}
	for _, c := range changes {
		line := fmt.Sprintf("%s %s", c.Kind, slashPath(c.Path))
		if layers {
			line += "\t" + layerLabel(tb, c.Layer)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// diffTree reads one side of a diff: a bundle's rootfs, or an image.
func diffTree(ctx context.Context, arg string, o imagefs.OpenOptions, removals bool) (*merge.Tree, func(), error) {
	if isBundle(arg) {
		t, err := bundle.Tree(ctx, arg, storeOptions())
		return t, func() {}, err
	}
	s, err := imagefs.Open(ctx, arg, o)
	if err != nil {
		return nil, nil, err
	}
	t, err := imagefs.Read(ctx, s.Layout, s.Image, merge.Options{Removals: removals})
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return t, func() { s.Close() }, nil
}

func slashPath(p string) string {
	if p == "." {
		return "/"
	}
	return "/" + p
}

// layerLabel names layer i of t: "layer 2 sha256:0123456789ab" for an
// image's layer (its index from 0, its blob's digest), "rootfs" for a
// bundle's changes, "-" for none.
func layerLabel(t *merge.Tree, i int) string {
	ls := t.Layers()
	switch {
	case i < 0 || i >= len(ls):
		return "-"
	case ls[i].Open == nil:
		return "rootfs"
	}
	d := ls[i].Name
	if alg, _, ok := strings.Cut(d, ":"); ok {
		d = alg + ":" + shortDigest(d)
	}
	return fmt.Sprintf("layer %d %s", i, d)
}

type diffJSON struct {
	Kind    string     `json:"kind"`
	Path    string     `json:"path"`
	Changes []string   `json:"changes,omitempty"`
	Layer   *layerJSON `json:"layer,omitempty"`
	Old     *fileJSON  `json:"old,omitempty"`
	New     *fileJSON  `json:"new,omitempty"`
}

type layerJSON struct {
	Index int `json:"index"`
	// Digest is the layer blob's; a bundle's own changes have Rootfs.
	Digest string `json:"digest,omitempty"`
	Rootfs string `json:"rootfs,omitempty"`
}

type fileJSON struct {
	Type     string            `json:"type"`
	Mode     string            `json:"mode"`
	UID      int               `json:"uid"`
	GID      int               `json:"gid"`
	Size     *int64            `json:"size,omitempty"`
	Digest   digest.Digest     `json:"digest,omitempty"`
	Link     string            `json:"link,omitempty"`
	Hardlink string            `json:"hardlink,omitempty"`
	Device   string            `json:"device,omitempty"`
	Mtime    time.Time         `json:"mtime"`
	Xattrs   map[string][]byte `json:"xattrs,omitempty"`
}

var typeNames = map[byte]string{
	layer.TypeReg: "file", layer.TypeDir: "dir", layer.TypeSymlink: "symlink",
	layer.TypeChar: "char", layer.TypeBlock: "block", layer.TypeFifo: "fifo",
}

func fileOf(f *merge.File) *fileJSON {
	if f == nil {
		return nil
	}
	j := &fileJSON{
		Type: typeNames[f.Type], Mode: fmt.Sprintf("%04o", f.Mode), UID: f.UID, GID: f.GID,
		Digest: f.Digest, Link: f.Link, Hardlink: slashOrEmpty(f.HardlinkTo),
		Mtime: time.Unix(0, f.Mtime).UTC(), Xattrs: f.Xattrs,
	}
	switch f.Type {
	case layer.TypeReg:
		j.Size = &f.Size
	case layer.TypeChar, layer.TypeBlock:
		j.Device = fmt.Sprintf("%d:%d", f.DevMajor, f.DevMinor)
	}
	return j
}

func slashOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	return slashPath(p)
}

func printDiffJSON(w io.Writer, changes []merge.Change, tb *merge.Tree) error {
	out := make([]diffJSON, 0, len(changes))
	ls := tb.Layers()
	for _, c := range changes {
		d := diffJSON{Kind: c.Kind.String(), Path: slashPath(c.Path), Changes: c.Fields, Old: fileOf(c.Old), New: fileOf(c.New)}
		if c.Layer >= 0 && c.Layer < len(ls) {
			d.Layer = &layerJSON{Index: c.Layer}
			if ls[c.Layer].Open == nil {
				d.Layer.Rootfs = ls[c.Layer].Name
			} else {
				d.Layer.Digest = ls[c.Layer].Name
			}
		}
		out = append(out, d)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
