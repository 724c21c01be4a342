package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

// Values of inspect --raw.
var rawKinds = []string{"manifest", "config", "index"}

// inspectOptions are the flags of strata inspect.
type inspectOptions struct {
	asJSON   bool
	raw      string
	platform string
}

func newInspectCmd() *cobra.Command {
	var o inspectOptions
	c := &cobra.Command{
		Use:   "inspect LAYOUT[:REF]",
		Short: "Describe an image",
		Long: `Describe the image LAYOUT:REF: its name, manifest digest and media type,
platform, creation time, author, layers, run configuration (entrypoint,
cmd, env, working directory, user, labels) and history length. When REF
names an index (a multi-platform image) the manifest for --platform is
described, the host's platform by default.

--raw prints the exact stored bytes of the manifest, the config or (when
REF names one) the index, as digests are computed over them.`,
		Example: `  strata inspect ./img:v1
  strata inspect --platform linux/arm64 --json ./img:latest
  strata inspect --raw config ./img:v1 | jq .config.Env`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeFirstRef,
		RunE: func(c *cobra.Command, args []string) error {
			return runInspect(c.OutOrStdout(), o, c.Flags().Changed("platform"), args[0])
		},
	}
	c.Flags().BoolVar(&o.asJSON, "json", false, "print the summary as JSON")
	c.Flags().StringVar(&o.raw, "raw", "", "print the stored bytes of the `manifest`, config or index")
	c.Flags().StringVar(&o.platform, "platform", "", "platform os/arch[/variant] to pick from an index (default: the host's)")
	_ = c.RegisterFlagCompletionFunc("raw", cobra.FixedCompletions(rawKinds, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("platform", cobra.FixedCompletions([]string{
		"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/386", "linux/ppc64le", "linux/s390x", "linux/riscv64",
	}, cobra.ShellCompDirectiveNoFileComp))
	return c
}

// runInspect describes the image arg (LAYOUT[:REF]) names on out, or
// prints its stored bytes with --raw. platformGiven says --platform was
// given: an image that is no index must then be of that platform.
func runInspect(out io.Writer, o inspectOptions, platformGiven bool, arg string) error {
	if o.raw != "" && !contains(rawKinds, o.raw) {
		return usagef("--raw %q: want one of %s", o.raw, strings.Join(rawKinds, ", "))
	}
	if o.raw != "" && o.asJSON {
		return usagef("--raw and --json cannot be used together")
	}
	plat, err := layout.ParsePlatform(o.platform)
	if err != nil {
		return usageError{err}
	}
	l, ref, err := openLayoutRef(arg)
	if err != nil {
		return err
	}
	defer l.Close()
	desc, err := l.Resolve(ref)
	if err != nil {
		return err
	}
	isIndex, err := namesIndex(l, &desc)
	if err != nil {
		return err
	}
	if o.raw == "index" {
		if !isIndex {
			return fmt.Errorf("%s names an image manifest (%s), not an index: use --raw manifest", arg, desc.Digest)
		}
		b, err := l.ReadBlob(desc, layout.MaxManifestSize)
		if err != nil {
			return fmt.Errorf("read index %s: %w", desc.Digest, err)
		}
		_, err = out.Write(b)
		return err
	}
	md, err := l.SelectManifest(desc, &plat)
	if err != nil {
		return fmt.Errorf("%s: %w", arg, err)
	}
	img, err := l.ReadImage(md)
	if err != nil {
		return err
	}
	if platformGiven && !isIndex {
		got := ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
		if !platforms.Only(plat).Match(platforms.Normalize(got)) {
			return fmt.Errorf("%s: %w %s: the image is %s", arg, layout.ErrNoPlatform, platforms.Format(plat), platforms.Format(got))
		}
	}
	switch o.raw {
	case "manifest":
		_, err = out.Write(img.ManifestRaw)
		return err
	case "config":
		_, err = out.Write(img.ConfigRaw)
		return err
	}
	return printInspect(out, l, desc, isIndex, img, o.asJSON)
}

// printInspect prints the summary of img, which desc names (an index
// when isIndex), as text or JSON.
func printInspect(out io.Writer, l *layout.Layout, desc ocispec.Descriptor, isIndex bool, img *layout.Image, asJSON bool) error {
	s := summarize(img)
	s.Name = desc.Annotations[layout.AnnotationRefName]
	if s.Name == "" {
		s.Name = desc.Annotations[layout.AnnotationImageName]
	}
	if isIndex {
		d := desc
		d.Annotations = nil
		s.Index = &d
		ps, err := l.Platforms(desc)
		if err != nil {
			return err
		}
		for _, p := range ps {
			s.Platforms = append(s.Platforms, platforms.Format(p))
		}
	}
	if asJSON {
		b, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			return fmt.Errorf("encode summary: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	return printSummary(out, s)
}

// namesIndex reports whether desc is an image index, filling in its media
// type from the blob when index.json left it out.
func namesIndex(l *layout.Layout, desc *ocispec.Descriptor) (bool, error) {
	if desc.MediaType == "" {
		b, err := l.ReadBlob(*desc, layout.MaxManifestSize)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", desc.Digest, err)
		}
		var probe struct {
			MediaType string          `json:"mediaType"`
			Manifests json.RawMessage `json:"manifests"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			return false, fmt.Errorf("%s: not JSON: %w", desc.Digest, err)
		}
		desc.MediaType = probe.MediaType
		if desc.MediaType == "" {
			desc.MediaType = ocispec.MediaTypeImageManifest
			if probe.Manifests != nil {
				desc.MediaType = ocispec.MediaTypeImageIndex
			}
		}
	}
	return layout.IsIndex(desc.MediaType), nil
}

// imageSummary is what inspect shows, and its --json form.
type imageSummary struct {
	Name string `json:"name,omitempty"`
	// Index is the index REF names, when it names one; Platforms are the
	// platforms it offers.
	Index     *ocispec.Descriptor `json:"index,omitempty"`
	Platforms []string            `json:"platforms,omitempty"`
	// Manifest is the described image's manifest.
	Manifest    ocispec.Descriptor   `json:"manifest"`
	Platform    string               `json:"platform"`
	Created     *time.Time           `json:"created,omitempty"`
	Author      string               `json:"author,omitempty"`
	Config      ocispec.ImageConfig  `json:"config"`
	Layers      []ocispec.Descriptor `json:"layers"`
	Size        int64                `json:"size"`
	History     int                  `json:"history"`
	Annotations map[string]string    `json:"annotations,omitempty"`
	// ArtifactType and Subject describe an artifact (an SBOM, a
	// signature): its type and the image it refers to.
	ArtifactType string              `json:"artifactType,omitempty"`
	Subject      *ocispec.Descriptor `json:"subject,omitempty"`
}

func summarize(img *layout.Image) *imageSummary {
	m := img.Descriptor
	m.Annotations = nil
	m.Platform = nil
	s := &imageSummary{
		Manifest: m,
		Platform: platforms.Format(ocispec.Platform{
			OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant,
		}),
		Created:     img.Config.Created,
		Author:      img.Config.Author,
		Config:      img.Config.Config,
		Layers:      img.Manifest.Layers,
		History:     len(img.Config.History),
		Annotations: img.Manifest.Annotations,
	}
	if s.Layers == nil {
		s.Layers = []ocispec.Descriptor{}
	}
	s.ArtifactType, s.Subject = img.Manifest.ArtifactType, img.Manifest.Subject
	if !layout.IsConfig(img.Manifest.Config.MediaType) {
		// An artifact: no platform, its type is its config's unless given.
		s.Platform = ""
		if s.ArtifactType == "" {
			s.ArtifactType = img.Manifest.Config.MediaType
		}
	}
	s.Size = m.Size + img.Manifest.Config.Size
	for _, ly := range s.Layers {
		s.Size += ly.Size
	}
	return s
}

func printSummary(w io.Writer, s *imageSummary) error {
	var b strings.Builder
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-12s %s\n", k+":", v)
		}
	}
	list := func(k string, vs []string) {
		if len(vs) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s:\n", k)
		for _, v := range vs {
			fmt.Fprintf(&b, "  %s\n", v)
		}
	}
	name := s.Name
	if name == "" {
		name = "<none>"
	}
	field("Name", name)
	if s.Index != nil {
		field("Index", s.Index.Digest.String())
		field("Platforms", strings.Join(s.Platforms, ", "))
	}
	field("Digest", s.Manifest.Digest.String())
	field("Media type", s.Manifest.MediaType)
	field("Artifact", s.ArtifactType)
	if s.Subject != nil {
		field("Subject", s.Subject.Digest.String())
	}
	field("Platform", s.Platform)
	field("Size", humanSize(s.Size))
	if s.Created != nil {
		field("Created", s.Created.UTC().Format(time.RFC3339))
	}
	field("Author", s.Author)
	if s.Config.Entrypoint != nil {
		field("Entrypoint", jsonString(s.Config.Entrypoint))
	}
	if s.Config.Cmd != nil {
		field("Cmd", jsonString(s.Config.Cmd))
	}
	field("WorkingDir", s.Config.WorkingDir)
	field("User", s.Config.User)
	field("StopSignal", s.Config.StopSignal)
	list("Env", s.Config.Env)
	list("Labels", sortedPairs(s.Config.Labels))
	list("Ports", sortedKeys(s.Config.ExposedPorts))
	list("Volumes", sortedKeys(s.Config.Volumes))
	list("Annotations", sortedPairs(s.Annotations))
	field("History", fmt.Sprintf("%d entries", s.History))
	fmt.Fprintf(&b, "Layers:      %d\n", len(s.Layers))
	for _, ly := range s.Layers {
		fmt.Fprintf(&b, "  %s  %9s  %s\n", ly.Digest, humanSize(ly.Size), ly.MediaType)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func sortedPairs(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
