package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newTagCmd(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "tag LAYOUT[:REF] NEWREF...",
		Short: "Give an image more names",
		Long: `Name the image LAYOUT:REF also NEWREF, for each NEWREF, in one atomic
update of index.json. A NEWREF that named another image now names this one.
NEWREF is a tag (v2) or a full name (docker.io/library/debian:12); it may
also be written LAYOUT:NEWREF with the same LAYOUT.`,
		Example: `  strata tag ./img:v1 v1.0 latest
  strata tag ./img:@sha256:4f2c... docker.io/example/app:1`,
		Args:              minArgs(2),
		ValidArgsFunction: completeFirstRef,
		RunE: func(c *cobra.Command, args []string) error {
			dir, _, err := parseRefArg(args[0])
			if err != nil {
				return err
			}
			names := make([]string, 0, len(args)-1)
			for _, n := range args[1:] {
				n = strings.TrimPrefix(n, dir+":")
				if err := layout.ValidateRef(n); err != nil {
					return usageError{err}
				}
				if _, ok := layout.IsDigestRef(n); ok {
					return usagef("tag %s: a name cannot be a digest", n)
				}
				names = append(names, n)
			}
			l, ref, err := openLayoutRef(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			desc, err := l.Resolve(ref)
			if err != nil {
				return err
			}
			if err := l.Tag(desc, names...); err != nil {
				return err
			}
			g.infof("tagged %s as %s", desc.Digest, strings.Join(names, ", "))
			return nil
		},
	}
}
