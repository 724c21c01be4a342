package main

import (
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

// Shell completion. The completion command writes cobra's scripts for
// bash, zsh, fish and powershell; the scripts call back into strata (the
// hidden __complete command), which runs the functions below: directories
// for DIR, and the names and digests in a layout's index.json for
// LAYOUT:REF.

func newCompletionCmd() *cobra.Command {
	var noDesc bool
	c := &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `Print the script that makes SHELL complete strata's commands, flags,
directories and, after LAYOUT:, the image names in that layout.

  bash:        source <(strata completion bash)
               (or save it as /etc/bash_completion.d/strata; needs the
               bash-completion package)
  zsh:         strata completion zsh > "${fpath[1]}/_strata"
  fish:        strata completion fish > ~/.config/fish/completions/strata.fish
  powershell:  strata completion powershell | Out-String | Invoke-Expression`,
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		Args:                  exactArgs(1),
		DisableFlagsInUseLine: true,
		RunE: func(c *cobra.Command, args []string) error {
			out := c.OutOrStdout()
			root := c.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, !noDesc)
			case "zsh":
				if noDesc {
					return root.GenZshCompletionNoDesc(out)
				}
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, !noDesc)
			case "powershell":
				if noDesc {
					return root.GenPowerShellCompletion(out)
				}
				return root.GenPowerShellCompletionWithDesc(out)
			}
			return usagef("completion: unknown shell %q: want bash, zsh, fish or powershell", args[0])
		},
	}
	c.Flags().BoolVar(&noDesc, "no-descriptions", false, "complete without descriptions")
	return c
}

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
