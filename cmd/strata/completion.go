package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

// Shell completion. Cobra's own `completion` command, which it adds to
// rootCmd by itself, writes the scripts for bash, zsh, fish and powershell
// with install instructions in its help; the functions here complete
// strata's arguments: directories for DIR, and the names and digests in a layout's
// index.json for LAYOUT:REF.

// completeDirs completes a DIR argument with directory names.
func completeDirs(_ *cobra.Command, _ []string, _ string) ([]string, cobra.ShellCompDirective) {
	return nil, cobra.ShellCompDirectiveFilterDirs
}

// completeRefArgs completes every argument as LAYOUT:REF.
func completeRefArgs(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return refCompletions(toComplete)
}

// completeFirstRef completes the first argument as LAYOUT:REF and offers
// nothing for the rest.
func completeFirstRef(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return refCompletions(toComplete)
}

// refCompletions completes DIR to directories, and DIR: (or a DIR that is
// a layout) to DIR:REF for each name and untagged digest in its index.
func refCompletions(toComplete string) ([]string, cobra.ShellCompDirective) {
	dir, prefix, hasColon := strings.Cut(toComplete, ":")
	if !hasColon {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, cobra.ShellCompDirectiveFilterDirs
		}
	}
	if dir == "" {
		return nil, cobra.ShellCompDirectiveFilterDirs
	}
	l, err := layout.Open(dir)
	if err != nil {
		if hasColon {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return nil, cobra.ShellCompDirectiveFilterDirs
	}
	defer l.Close()
	idx, err := l.Index()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var out []string
	seen := map[string]bool{}
	for _, m := range idx.Manifests {
		ref := m.Annotations[layout.AnnotationRefName]
		if ref == "" {
			ref = "@" + m.Digest.String()
		}
		if seen[ref] || !strings.HasPrefix(ref, prefix) {
			continue
		}
		seen[ref] = true
		out = append(out, dir+":"+ref+"\t"+shortDigest(m.Digest.String()))
	}
	return out, cobra.ShellCompDirectiveNoFileComp
}

// shortDigest is the first 12 hex digits of a digest, as docker shows it.
func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok {
		hex = d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}
