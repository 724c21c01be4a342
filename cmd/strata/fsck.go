package main

import (
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func init() {
	var asJSON bool
	c := &cobra.Command{
		Use:   "fsck DIR",
		Short: "Check a layout's blobs and images",
		Long: `Check DIR: every blob's content against its digest, that every blob
reachable from index.json is present with the size its descriptor gives,
and that every reachable index, manifest and config parses. Each problem
is printed on its own line; the exit status is 1 when there is one.`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeDirs,
		RunE: func(c *cobra.Command, args []string) error {
			l, err := layout.Open(args[0])
			if err != nil {
				return err
			}
			defer l.Close()
			problems, err := fsckWithProgress(l)
			if err != nil {
				return fmt.Errorf("fsck %s: %w", args[0], err)
			}
			out := c.OutOrStdout()
			if asJSON {
				if problems == nil {
					problems = []layout.Problem{}
				}
				b, err := json.MarshalIndent(problems, "", "  ")
				if err != nil {
					return fmt.Errorf("encode fsck result: %w", err)
				}
				if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
					return err
				}
			} else if len(problems) == 0 {
				_, err := fmt.Fprintln(out, "ok")
				return err
			} else {
				for _, p := range problems {
					if _, err := fmt.Fprintln(out, p.String()); err != nil {
						return err
					}
				}
			}
			if len(problems) > 0 {
				return fmt.Errorf("fsck %s: %d problem(s) found", args[0], len(problems))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the problems as JSON")
	rootCmd.AddCommand(c)
}

// fsckWithProgress runs fsck with a byte bar over the blobs' content when
// bars are drawn.
func fsckWithProgress(l *layout.Layout) ([]layout.Problem, error) {
	p := newProgress()
	if !p.active() {
		return l.Fsck()
	}
	defer p.Wait()
	var total int64
	// The sizes are only for the bar: errors here are fsck's to report.
	_ = l.Blobs().Walk(func(_ digest.Digest, size int64, err error) error {
		if err == nil {
			total += size
		}
		return nil
	})
	bar := p.Bytes("verify blobs", total)
	return l.FsckProgress(bar.Add)
}
