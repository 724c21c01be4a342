package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout"
)

func newAttachCmd(g *globalFlags) *cobra.Command {
	var (
		artifactType string
		annotations  []string
		created      string
	)
	c := &cobra.Command{
		Use:   "attach --artifact-type TYPE [flags] LAYOUT[:REF] [FILE[:TYPE]...]",
		Short: "Attach an artifact (SBOM, signature, attestation) to an image",
		Long: `Store an artifact that refers to the image LAYOUT:REF, as oras attach does:
an image-spec 1.1 manifest with artifactType TYPE, the empty config, the
image as its subject, and each FILE as a layer titled by its base name.
A file's media type is sniffed (SPDX, CycloneDX, in-toto, SARIF, JSON,
gzip, tar, text, else application/octet-stream) unless given as
FILE:TYPE. With no FILE the artifact is its annotations alone.

The artifact is an untagged entry of index.json, as oras keeps them:
strata referrers lists it, copy/save/load/pull/push --referrers carry it
with the image, gc keeps it as long as the image. Its digest is printed
on stdout.`,
		Example: `  strata attach --artifact-type application/spdx+json ./img:v1 sbom.spdx.json
  strata attach --artifact-type application/vnd.example.review --annotation reviewed-by=alice ./img:v1
  strata attach --artifact-type application/vnd.example.logs ./img:v1 build.log:text/plain`,
		Args:              minArgs(1),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAttach(cmd, g, artifactType, annotations, created, args[0], args[1:])
		},
	}
	fl := c.Flags()
	fl.StringVar(&artifactType, "artifact-type", "", "the artifact's `TYPE`, a media type such as application/spdx+json (required)")
	fl.StringArrayVar(&annotations, "annotation", nil, "add the annotation `KEY=VALUE` to the artifact's manifest (repeatable)")
	fl.StringVar(&created, "created", "", "creation `time` recorded in org.opencontainers.image.created, RFC 3339 or unix seconds (default: $SOURCE_DATE_EPOCH, else now)")
	return c
}

func runAttach(cmd *cobra.Command, g *globalFlags, artifactType string, annotations []string, created, ref string, files []string) error {
	if artifactType == "" {
		return usagef("attach needs --artifact-type TYPE")
	}
	ann, err := parseAnnotations(annotations)
	if err != nil {
		return err
	}
	when, err := createdTime(cmd, "created", created)
	if err != nil {
		return err
	}
	o := layout.AttachOptions{ArtifactType: artifactType, Annotations: ann, Created: time.Now().UTC().Truncate(time.Second)}
	if when != nil {
		o.Created = *when
	}
	for _, arg := range files {
		f, err := artifactFile(arg)
		if err != nil {
			return err
		}
		o.Files = append(o.Files, f)
	}
	l, r, err := openLayoutRef(ref)
	if err != nil {
		return err
	}
	defer l.Close()
	subject, err := l.Resolve(r)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	d, err := l.Attach(ctx, subject, o)
	if err != nil {
		return err
	}
	g.infof("attached %s (%s) to %s", d.Digest, artifactType, subject.Digest)
	_, err = fmt.Fprintln(cmd.OutOrStdout(), d.Digest)
	return err
}

// artifactFile turns FILE or FILE:TYPE into an artifact file. A name
// that exists as given is a file even when it holds a colon.
func artifactFile(arg string) (layout.ArtifactFile, error) {
	path, mt := splitArtifactArg(arg, func(name string) bool {
		_, err := os.Stat(name)
		return err == nil
	})
	fi, err := os.Stat(path)
	if err != nil {
		return layout.ArtifactFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return layout.ArtifactFile{}, usagef("%s is not a regular file", path)
	}
	return layout.ArtifactFile{Name: path, MediaType: mt, Open: func() (io.ReadCloser, error) { return os.Open(path) }}, nil
}

// splitArtifactArg splits FILE:TYPE (TYPE holds a slash) into the file
// and its media type; an arg that exists as a file is a file name whole.
func splitArtifactArg(arg string, exists func(string) bool) (path, mediaType string) {
	if !exists(arg) {
		if i := strings.LastIndexByte(arg, ':'); i > 0 && strings.Contains(arg[i+1:], "/") {
			return arg[:i], arg[i+1:]
		}
	}
	return arg, ""
}

// parseAnnotations reads repeated KEY=VALUE flags.
func parseAnnotations(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--annotation %q: want KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}
