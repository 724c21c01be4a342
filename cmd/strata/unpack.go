package main

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/ids"
)

// unpackFlags are the flags of strata unpack.
type unpackFlags struct {
	driver, platform string
	uidMaps, gidMaps []string
}

func newUnpackCmd(g *globalFlags) *cobra.Command {
	var o unpackFlags
	c := &cobra.Command{
		Use:   "unpack LAYOUT:REF DIR",
		Short: "Unpack an image into a runtime-spec bundle (DIR/rootfs, DIR/config.json)",
		Long: `Make DIR (new, or empty) a working container of the image: DIR/rootfs
holds its root file system and DIR/config.json a runtime-spec config
derived from the image config (command, environment, working directory,
user), so that runc run -b DIR works, as after umoci unpack. A DIR that an
unpack of the same image was killed in is cleared and done again; a DIR
another unpack is writing is refused.

Layers are extracted once into the snapshot store (--root; by default
/var/lib/strata for root, $XDG_DATA_HOME/strata for other users), keyed by
driver and chain ID, and shared by every image and bundle that uses them.
--driver vfs (the default) copies, on any file system and for any user;
overlay mounts.

As an unprivileged user devices become empty files and config.json is a
rootless spec. vfs keeps the image's owners in the user.rootlesscontainers
xattr (the files are the user's); overlay runs in strata's user namespace,
where the files get the owners its /etc/subuid and /etc/subgid ranges map
(the rest in the xattr), and the bundle runs there too:
strata mount DIR -- runc run -b DIR NAME.

--uid-map/--gid-map shift owners for a user namespace (root only): vfs
chowns the copy, overlay mounts the shared layers through idmapped mounts,
so nothing is copied; commit shifts owners back.`,
		Example: `  strata unpack ./img:v1 ./bundle && runc run -b ./bundle ctr
  strata unpack --platform linux/arm64 --driver overlay ./img:v1 ./bundle
  strata unpack --uid-map 0:100000:65536 --gid-map 0:100000:65536 ./img:v1 ./bundle
  strata unpack --driver overlay --uid-map 0:100000:65536 ./img:v1 ./bundle`,
		Args:              exactArgs(2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(c *cobra.Command, args []string) error {
			return g.runUnpack(c.Context(), o, args[0], args[1])
		},
	}
	c.Flags().StringVar(&o.driver, "driver", bundle.DefaultDriver, "snapshot driver: `vfs` or overlay")
	c.Flags().StringVar(&o.platform, "platform", "", "image platform `os/arch[/variant]` of an index (default: this machine's)")
	c.Flags().StringArrayVar(&o.uidMaps, "uid-map", nil, "shift owners: `CONTAINERID:HOSTID:SIZE` (repeatable)")
	c.Flags().StringArrayVar(&o.gidMaps, "gid-map", nil, "shift groups: `CONTAINERID:HOSTID:SIZE` (repeatable)")
	return c
}

// runUnpack unpacks the image arg (LAYOUT:REF) names into the bundle dir.
func (g *globalFlags) runUnpack(ctx context.Context, f unpackFlags, arg, dir string) error {
	o, err := g.unpackOptions(f)
	if err != nil {
		return err
	}
	// The file list of an image with 100k+ files is tens of MB live; a
	// soft limit makes the collector keep the process well under 100 MB
	// instead of letting the heap double.
	debug.SetMemoryLimit(64 << 20)
	o.Driver = overlayDisabled(f.driver)
	if f.platform != "" {
		p, err := layout.ParsePlatform(f.platform)
		if err != nil {
			return usageError{err}
		}
		o.Platform = &p
	}
	l, ref, err := openLayoutRef(arg)
	if err != nil {
		return err
	}
	defer l.Close()
	s, err := g.openStore()
	if err != nil {
		return err
	}
	defer s.Close()
	// An interrupted unpack removes what it made.
	rec, err := bundle.Unpack(ctx, s, l, ref, dir, o)
	if err != nil {
		return err
	}
	g.infof("unpacked %s into %s (%s driver, %d layers)", arg, rec.Dir, rec.Driver, len(rec.Chain))
	return nil
}

// unpackOptions checks the ID-map flags, re-executes in strata's user
// namespace where the driver needs it, and returns the options of an
// unpack with its ID map and callbacks set.
func (g *globalFlags) unpackOptions(f unpackFlags) (bundle.UnpackOptions, error) {
	m, err := parseIDMaps(f.uidMaps, f.gidMaps)
	if err != nil {
		return bundle.UnpackOptions{}, err
	}
	if overlayNeedsUserns(f.driver) {
		if !m.Empty() {
			// Idmapped mounts of the layers need root.
			return bundle.UnpackOptions{}, fmt.Errorf("--uid-map/--gid-map with --driver overlay: %w", overlay.ErrIDMapNeedsRoot)
		}
		if err := g.reexecInUserns(true); err != nil {
			return bundle.UnpackOptions{}, err
		}
	}
	return bundle.UnpackOptions{
		IDMap: m,
		Layer: func(i, n int, d digest.Digest, extracted bool) {
			if extracted {
				g.infof("extracting layer %d/%d %s", i+1, n, shortDigest(d.String()))
			} else {
				g.debugf("layer %d/%d %s already extracted", i+1, n, d)
			}
		},
		OnFallback: overlayFallback,
	}, nil
}

// parseIDMaps parses --uid-map and --gid-map; one without the other uses
// the same mapping for both.
func parseIDMaps(uids, gids []string) (*ids.Map, error) {
	m := &ids.Map{}
	for _, s := range uids {
		r, err := ids.ParseRange(s)
		if err != nil {
			return nil, usagef("--uid-map: %v", err)
		}
		m.UIDs = append(m.UIDs, r)
	}
	for _, s := range gids {
		r, err := ids.ParseRange(s)
		if err != nil {
			return nil, usagef("--gid-map: %v", err)
		}
		m.GIDs = append(m.GIDs, r)
	}
	if err := ids.ValidateRanges(m.UIDs); err != nil {
		return nil, usagef("--uid-map: %v", err)
	}
	if err := ids.ValidateRanges(m.GIDs); err != nil {
		return nil, usagef("--gid-map: %v", err)
	}
	if len(m.UIDs) == 0 {
		m.UIDs = m.GIDs
	}
	if len(m.GIDs) == 0 {
		m.GIDs = m.UIDs
	}
	if m.Empty() {
		return nil, nil
	}
	return m, nil
}
