package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
	"github.com/vbauerster/mpb/v8/decor"
)

func newLsCmd() *cobra.Command {
	var asJSON, noTrunc bool
	c := &cobra.Command{
		Use:   "ls DIR",
		Short: "List the images in a layout",
		Long: `List the images named in DIR's index.json: name, manifest digest,
platforms and total size (manifests, configs and compressed layers, each
blob counted once). Images without a name are listed as <none> and can be
referred to as DIR:@DIGEST; untagged referrers (signatures, SBOMs) as
<referrer of DIGEST> (see strata referrers).`,
		Aliases:           []string{"list"},
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := layout.Open(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			ents, err := l.List()
			if err != nil {
				return err
			}
			out := c.OutOrStdout()
			if asJSON {
				b, err := json.MarshalIndent(ents, "", "  ")
				if err != nil {
					return fmt.Errorf("encode listing: %w", err)
				}
				if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
					return err
				}
			} else if err := printEntries(out, ents, noTrunc); err != nil {
				return err
			}
			var bad []string
			for _, e := range ents {
				if e.Err != "" {
					bad = append(bad, e.Err)
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s: %d image(s) could not be read (see strata fsck %s): %s", args[0], len(bad), args[0], bad[0])
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the listing as JSON")
	c.Flags().BoolVar(&noTrunc, "no-trunc", false, "print full digests")
	return c
}

func printEntries(w io.Writer, ents []layout.Entry, noTrunc bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tPLATFORMS\tSIZE")
	for _, e := range ents {
		name := e.Name
		switch {
		case name == "" && e.Subject != "":
			name = "<referrer of " + shortDigest(e.Subject.String()) + ">"
		case name == "":
			name = "<none>"
		}
		dg := e.Descriptor.Digest.String()
		if !noTrunc {
			dg = shortDigest(dg)
		}
		plats := strings.Join(e.Platforms, ",")
		size := humanSize(e.Size)
		if e.Err != "" {
			plats, size = "(unreadable)", "-"
		} else if plats == "" {
			plats = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, dg, plats, size)
	}
	return tw.Flush()
}

// humanSize renders a byte count with binary units (1.5 MiB).
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("% .1f", decor.SizeB1024(n))
}
