package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newReferrersCmd() *cobra.Command {
	var (
		asJSON       bool
		artifactType string
	)
	c := &cobra.Command{
		Use:   "referrers [flags] LAYOUT[:REF]",
		Short: "List the signatures, SBOMs and other artifacts that refer to an image",
		Long: `Show the referrers of the image LAYOUT:REF as a tree, as oras discover
does: artifacts whose subject is the image (or one of its platforms'
manifests), grouped by artifact type, and theirs below them. cosign's
signatures, attestations and SBOMs kept under sha256-<hex>.sig, .att and
.sbom tags are listed too. --artifact-type keeps only the referrers of
that type directly below the image.`,
		Example: `  strata referrers ./img:v1
  strata referrers --json --artifact-type application/spdx+json ./img:v1`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReferrers(cmd, args[0], artifactType, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the tree as JSON")
	c.Flags().StringVar(&artifactType, "artifact-type", "", "list only referrers of `TYPE` below the image")
	return c
}

// referrerNode is one node of the referrers tree, as --json prints it.
type referrerNode struct {
	Reference string `json:"reference,omitempty"`
	ocispec.Descriptor
	// Tag is the tag of one of cosign's artifacts.
	Tag       string          `json:"tag,omitempty"`
	Referrers []*referrerNode `json:"referrers"`
}

func runReferrers(cmd *cobra.Command, arg, artifactType string, asJSON bool) error {
	l, ref, err := openLayoutRef(arg)
	if err != nil {
		return err
	}
	defer l.Close()
	desc, err := l.Resolve(ref)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		return err
	}
	root := &referrerNode{Reference: arg, Descriptor: bareDesc(desc)}
	seen := map[digest.Digest]bool{desc.Digest: true}
	if err := addReferrers(ri, root, desc, artifactType, seen); err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if asJSON {
		b, err := json.MarshalIndent(root, "", "  ")
		if err != nil {
			return fmt.Errorf("encode referrers: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	fmt.Fprintf(out, "%s@%s\n", strings.TrimSuffix(arg, ":"+ref), desc.Digest)
	return printReferrerTree(out, root.Referrers, "")
}

// addReferrers fills node with the referrers of d's graph (an index's
// platform manifests have theirs too), and theirs below them.
func addReferrers(ri *layout.ReferrerIndex, node *referrerNode, d ocispec.Descriptor, artifactType string, seen map[digest.Digest]bool) error {
	refs, err := ri.Direct(d, artifactType)
	if err != nil {
		return err
	}
	node.Referrers = []*referrerNode{}
	for _, r := range refs {
		if seen[r.Descriptor.Digest] {
			continue
		}
		seen[r.Descriptor.Digest] = true
		child := &referrerNode{Descriptor: r.Descriptor, Tag: r.Tag}
		if err := addReferrers(ri, child, r.Descriptor, "", seen); err != nil {
			return err
		}
		node.Referrers = append(node.Referrers, child)
	}
	return nil
}

// groupOf is what a referrer is listed under: its artifact type, or for
// cosign's the kind its tag says.
func groupOf(n *referrerNode) string {
	switch {
	case strings.HasSuffix(n.Tag, ".sig"):
		return "cosign signature (" + n.Tag + ")"
	case strings.HasSuffix(n.Tag, ".att"):
		return "cosign attestation (" + n.Tag + ")"
	case strings.HasSuffix(n.Tag, ".sbom"):
		return "cosign sbom (" + n.Tag + ")"
	case n.ArtifactType != "":
		return n.ArtifactType
	}
	return n.MediaType
}

// printReferrerTree prints nodes grouped by type, each with its own
// referrers below it.
func printReferrerTree(w io.Writer, nodes []*referrerNode, indent string) error {
	groups := map[string][]*referrerNode{}
	var order []string
	for _, n := range nodes {
		g := groupOf(n)
		if _, ok := groups[g]; !ok {
			order = append(order, g)
		}
		groups[g] = append(groups[g], n)
	}
	sort.Strings(order)
	for i, g := range order {
		last := i == len(order)-1
		branch, below := "├── ", "│   "
		if last {
			branch, below = "└── ", "    "
		}
		if _, err := fmt.Fprintf(w, "%s%s%s\n", indent, branch, g); err != nil {
			return err
		}
		for j, n := range groups[g] {
			lastN := j == len(groups[g])-1
			b2, below2 := "├── ", "│   "
			if lastN {
				b2, below2 = "└── ", "    "
			}
			if _, err := fmt.Fprintf(w, "%s%s%s%s\n", indent, below, b2, n.Digest); err != nil {
				return err
			}
			if err := printReferrerTree(w, n.Referrers, indent+below+below2); err != nil {
				return err
			}
		}
	}
	return nil
}

// bareDesc is a descriptor without what index.json adds to it.
func bareDesc(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
}
