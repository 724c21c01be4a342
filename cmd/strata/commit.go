package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
)

func init() {
	var (
		changes   []string
		message   string
		author    string
		createdBy string
		compress  string
		level     int
		timestamp string
	)
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
only a history entry marked empty_layer.

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
		RunE: func(cmd *cobra.Command, args []string) error {
			bundle := args[0]
			dir, ref, err := parseRefArg(args[1])
			if err != nil {
				return err
			}
			if _, ok := layout.IsDigestRef(ref); ok {
				return usagef("commit %s: name the image with a tag, not a digest", args[1])
			}
			kind, err := compression.ParseKind(compress)
			if err != nil {
				return usageError{err}
			}
			lvl := compression.DefaultLevel
			if level != 0 {
				if kind == compression.None {
					return usagef("--compression-level needs --compression gzip or zstd")
				}
				lvl = level
			}
			when, err := commitTime(cmd, timestamp)
			if err != nil {
				return err
			}
			host, err := layout.ParsePlatform("")
			if err != nil {
				return err
			}
			if err := dockerfile.Apply(layout.NewConfig(host), changes); err != nil {
				return usageError{err}
			}
			rec, err := snapshot.ReadRecord(bundle)
			if err != nil {
				return err
			}
			if overlayNeedsUserns(rec.Driver) {
				return reexecInUserns(false)
			}
			if !cmd.Flags().Changed("created-by") {
				createdBy = bundleCommand(bundle)
			}
			existed := isLayout(dir)
			dirExisted := pathExists(dir)
			l, err := layout.Init(dir)
			if err != nil {
				return err
			}
			res, err := snapshot.Commit(bundle, l, snapshot.CommitOptions{
				Ref:         ref,
				Author:      author,
				Comment:     message,
				CreatedBy:   createdBy,
				Edit:        func(c *layout.Config) error { return dockerfile.Apply(c, changes) },
				Compression: kind,
				Level:       lvl,
				Timestamp:   when,
			})
			l.Close()
			if err != nil {
				if !existed {
					removeNewLayout(dir, dirExisted)
				}
				return err
			}
			name := dir + ":" + ref
			if ref == "" {
				name = dir + "@" + res.Manifest.Digest.String() + " (untagged)"
			}
			if res.Layer == nil {
				infof("committed %s: no changes, empty layer recorded in history", name)
			} else {
				infof("committed %s: layer %s (%d entries, %d bytes %s), diffID %s", name, res.Layer.Descriptor.Digest, res.Entries, res.Layer.Descriptor.Size, kind, res.Layer.DiffID)
			}
			fmt.Fprintln(cmd.OutOrStdout(), res.Manifest.Digest)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile `instruction` to the config (repeatable)")
	fl.StringVarP(&message, "message", "m", "", "history comment for the layer")
	fl.StringVar(&author, "author", "", "author of the image (default: the parent image's)")
	fl.StringVar(&createdBy, "created-by", "", "history created_by `text` (default: the bundle's process command)")
	fl.StringVar(&compress, "compression", "gzip", "layer compression: `gzip`, zstd or none")
	fl.IntVar(&level, "compression-level", 0, "compression level (0: the format's default)")
	fl.StringVar(&timestamp, "timestamp", "", "creation `time`, RFC 3339 or unix seconds, that also caps file mtimes (default: $SOURCE_DATE_EPOCH, else now, uncapped)")
	rootCmd.AddCommand(c)
}

// commitTime is --timestamp, else SOURCE_DATE_EPOCH, else nil (now, and
// mtimes kept).
func commitTime(cmd *cobra.Command, flag string) (*time.Time, error) {
	if cmd.Flags().Changed("timestamp") {
		t, err := layout.ParseCreated(flag)
		if err != nil {
			return nil, usagef("--timestamp: %w", err)
		}
		return &t, nil
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		t, err := layout.ParseCreated(v)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return &t, nil
	}
	return nil, nil
}

// bundleCommand is the bundle's process command line, as docker commit
// records the container's command in created_by.
func bundleCommand(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, snapshot.SpecFile))
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
