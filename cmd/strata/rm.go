package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newRmCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm LAYOUT:REF...",
		Short: "Remove image names from layouts",
		Long: `Remove each LAYOUT:REF from its layout's index.json. A name is found as
every command finds it (ov1 removes docker.io/library/ov1:latest). A digest
(LAYOUT:@sha256:...) removes every name of that image. The names of one
layout are removed together or not at all. Blobs are not deleted: run
strata gc LAYOUT to remove what no remaining name reaches.`,
		Aliases:           []string{"untag"},
		Args:              minArgs(1),
		ValidArgsFunction: completeRefArgs,
		RunE: func(c *cobra.Command, args []string) error {
			// Group by layout, keeping the command line's order, and check
			// every argument before changing anything.
			var dirs []string
			refs := map[string][]string{}
			for _, a := range args {
				dir, ref, err := parseRefArg(a)
				if err != nil {
					return err
				}
				if ref == "" {
					return usagef("rm %s: name the image to remove as %s:REF", a, dir)
				}
				if _, ok := refs[dir]; !ok {
					dirs = append(dirs, dir)
				}
				if !contains(refs[dir], ref) {
					refs[dir] = append(refs[dir], ref)
				}
			}
			layouts := map[string]*layout.Layout{}
			removed := map[string][]string{}
			defer func() {
				for _, l := range layouts {
					l.Close()
				}
			}()
			for _, dir := range dirs {
				l, err := layout.Open(dir)
				if err != nil {
					return err
				}
				layouts[dir] = l
				for _, ref := range refs[dir] {
					names, err := hasEntry(l, ref)
					if err != nil {
						return err
					}
					removed[dir] = append(removed[dir], names...)
				}
			}
			for _, dir := range dirs {
				if err := layouts[dir].Untag(refs[dir]...); err != nil {
					return err
				}
				for _, n := range removed[dir] {
					g.infof("removed %s:%s", dir, n)
				}
			}
			return nil
		},
	}
}

// hasEntry checks that ref names an entry of the layout's index.json (not
// only a blob inside it, which Resolve also accepts for digests) and
// returns what it removes: the stored names a name stands for (ov1 may be
// docker.io/library/ov1:latest), or the digest itself.
func hasEntry(l *layout.Layout, ref string) ([]string, error) {
	d, byDigest := layout.IsDigestRef(ref)
	if !byDigest {
		return l.Names(ref)
	}
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	for _, m := range idx.Manifests {
		if m.Digest == d {
			return []string{ref}, nil
		}
	}
	return nil, fmt.Errorf("%s:%s: %w", l.Dir(), ref, layout.ErrRefNotFound)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
