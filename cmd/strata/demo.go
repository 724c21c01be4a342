package main

import (
	"archive/tar"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
)

// demoRoot is the demo image's root filesystem: a few small text files.
//
//go:embed demo/rootfs
var demoRoot embed.FS

const demoRootDir = "demo/rootfs"

// demoRef is the name the demo image gets in its layout.
const demoRef = "demo"

// demoEpoch is the demo image's creation time and every file's mtime:
// fixed, so that the demo image has the same digest on every run (and on
// every machine of one architecture).
var demoEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// demoChanges are the config changes the demo applies, written as
// strata import --change takes them.
var demoChanges = []string{
	`ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
	`CMD ["/bin/hello"]`,
	`LABEL org.opencontainers.image.title="strata demo" org.opencontainers.image.source=https://github.com/strata-oci/strata`,
}

// demoStep is one step of strata demo.
type demoStep struct {
	title string
	run   func(d *demoRun) error
}

// demoSteps are strata's main job, in order: build an image (this file),
// then unpack it, change it, commit the change and save both images
// (commit.go).
var demoSteps = []demoStep{
	{"Create an OCI image layout", demoInit},
	{"Pack the embedded root filesystem into a tar", demoPack},
	{"Store the tar as a compressed layer", demoLayer},
	{"Write the image config", demoConfig},
	{"Write the manifest and name the image", demoManifest},
	{"List the layout (strata ls)", demoList},
	{"Summarize the image (strata inspect)", demoInspect},
	{"Check every blob and reference (strata fsck)", demoFsck},
	{"Build it again: same input, same digest", demoRebuild},
	{"Unpack the image into a bundle (strata unpack)", demoUnpack},
	{"Change files in the bundle's rootfs", demoChange},
	{"Commit the change as a new layer (strata commit)", demoCommit},
	{"Save both images for docker load (strata save)", demoSave},
}

// demoRun is the state the steps share.
type demoRun struct {
	out io.Writer
	dir string
	l   *layout.Layout

	tar      []byte
	layer    layout.Layer
	cfg      *layout.Config
	config   ocispec.Descriptor
	manifest ocispec.Descriptor
}

// say prints an indented line of a step's output.
func (d *demoRun) say(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	for _, line := range strings.Split(s, "\n") {
		if line == "" {
			fmt.Fprintln(d.out)
			continue
		}
		fmt.Fprintln(d.out, "      "+line)
	}
}

// block prints preformatted text indented under a step.
func (d *demoRun) block(s string) {
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintln(d.out, "        "+line)
	}
}

func newDemoCmd() *cobra.Command {
	var keep string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Build a small image from files inside strata and show each step",
		Long: `Build an image from a small root filesystem embedded in the strata binary,
with no input and no network, and show what strata does on the way: the
layout it creates, the layer (digest, diffID, size), the config and the
manifest, the listing, the image summary and the fsck result. Then unpack
the image into a bundle, change files in it, commit the change as a second
image and save both into an archive docker load reads.

The layout (with the bundle, its snapshot store and the archive) is written
to a temporary directory that is removed at the end, or to DIR with
--keep DIR, ready for skopeo, umoci or strata.`,
		Example: `  strata demo
  strata demo --keep ./demo-oci && skopeo inspect oci:./demo-oci:demo`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := keep
			if dir == "" {
				tmp, err := os.MkdirTemp("", "strata-demo-")
				if err != nil {
					return fmt.Errorf("demo: %w", err)
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			out := cmd.OutOrStdout()
			if err := runDemo(out, dir); err != nil {
				return err
			}
			fmt.Fprintln(out)
			if keep != "" {
				fmt.Fprintf(out, "The layout is kept in %s. Try:\n", dir)
				fmt.Fprintf(out, "  strata ls %s\n  strata inspect %s:%s\n", dir, dir, demoRef)
				fmt.Fprintf(out, "  skopeo inspect oci:%s:%s\n  umoci unpack --image %s:%s bundle\n", dir, demoRef, dir, demoRef)
			} else {
				fmt.Fprintf(out, "Removed %s (use --keep DIR to keep the layout).\n", dir)
			}
			return nil
		},
	}
	c.Flags().StringVar(&keep, "keep", "", "write the layout to `DIR` and keep it")
	return c
}

// runDemo runs every step against a layout at dir.
func runDemo(out io.Writer, dir string) error {
	d := &demoRun{out: out, dir: dir}
	defer func() {
		if d.l != nil {
			d.l.Close()
		}
	}()
	fmt.Fprintf(out, "strata demo: build an OCI image from files embedded in strata, then unpack, change, commit and save it, step by step\n")
	for i, s := range demoSteps {
		fmt.Fprintf(out, "\n[%d/%d] %s\n", i+1, len(demoSteps), s.title)
		if err := s.run(d); err != nil {
			return fmt.Errorf("demo step %q: %w", s.title, err)
		}
	}
	return nil
}

func demoInit(d *demoRun) error {
	l, err := layout.Init(d.dir)
	if err != nil {
		return err
	}
	d.l = l
	abs, err := filepath.Abs(d.dir)
	if err != nil {
		abs = d.dir
	}
	d.say("%s/", abs)
	d.say("  oci-layout   marks the directory as an OCI image layout (version %s)", layout.LayoutVersion)
	d.say("  index.json   the layout's named images; empty for now")
	d.say("  blobs/       every manifest, config and layer, named by its digest")
	d.say("  .strata/     strata's staging area and locks; other tools ignore it")
	return nil
}

// demoFileMode gives the embedded files their modes: embed keeps none.
func demoFileMode(name string, dir bool) int64 {
	if dir || strings.HasPrefix(name, "bin/") {
		return 0o755
	}
	return 0o644
}

func demoPack(d *demoRun) error {
	b, listing, err := demoTar()
	if err != nil {
		return err
	}
	d.tar = b
	d.say("Files from the strata binary, owned by root, dated %s:", demoEpoch.Format(time.DateOnly))
	d.block(listing)
	d.say("tar: %d bytes, sha256 %s", len(b), digest.FromBytes(b).Encoded())
	d.say("(that sha256 will be the layer's diffID: the digest of the uncompressed tar)")
	return nil
}

// demoTar packs the embedded root filesystem in a fixed order with fixed
// owners and times, so that it is the same tar on every run.
func demoTar() ([]byte, string, error) {
	var buf bytes.Buffer
	var listing strings.Builder
	tw := tar.NewWriter(&buf)
	lw := tabwriter.NewWriter(&listing, 0, 4, 2, ' ', 0)
	err := fs.WalkDir(demoRoot, demoRootDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == demoRootDir {
			return nil
		}
		name := strings.TrimPrefix(p, demoRootDir+"/")
		h := &tar.Header{
			Name: name, Mode: demoFileMode(name, e.IsDir()), ModTime: demoEpoch,
			Uname: "root", Gname: "root", Format: tar.FormatUSTAR,
		}
		var body []byte
		if e.IsDir() {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			if body, err = demoRoot.ReadFile(p); err != nil {
				return err
			}
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
		if _, err := tw.Write(body); err != nil {
			return fmt.Errorf("tar %s: %w", name, err)
		}
		fmt.Fprintf(lw, "%s\t%d\t/%s\n", fs.FileMode(h.Mode)|modeDirBit(e.IsDir()), h.Size, h.Name)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("pack embedded rootfs: %w", err)
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	lw.Flush()
	return buf.Bytes(), listing.String(), nil
}

func modeDirBit(dir bool) fs.FileMode {
	if dir {
		return fs.ModeDir
	}
	return 0
}

func demoLayer(d *demoRun) error {
	ly, err := d.l.PutLayer(context.Background(), bytes.NewReader(d.tar), layout.WithCompression(compression.Gzip), layout.WithTarCheck())
	if err != nil {
		return err
	}
	d.layer = ly
	d.say("The tar is streamed once: its headers are checked, its sha256 (diffID)")
	d.say("and the gzip stream's sha256 (digest) are computed while pgzip compresses")
	d.say("it on %d core(s) straight into the blob store.", runtime.GOMAXPROCS(0))
	d.say("media type  %s", ly.Descriptor.MediaType)
	d.say("digest      %s", ly.Descriptor.Digest)
	d.say("diffID      %s", ly.DiffID)
	d.say("size        %d bytes compressed, %d bytes of tar", ly.Descriptor.Size, ly.UncompressedSize)
	d.say("stored at   blobs/%s/%s", ly.Descriptor.Digest.Algorithm(), ly.Descriptor.Digest.Encoded())
	d.say("(a gzip or zstd tarball given to strata import is stored byte for byte instead)")
	return nil
}

func demoConfig(d *demoRun) error {
	p, err := layout.ParsePlatform("")
	if err != nil {
		return err
	}
	cfg := layout.NewConfig(p)
	if err := cfg.Set("created", demoEpoch); err != nil {
		return err
	}
	if err := dockerfile.Apply(cfg, demoChanges); err != nil {
		return err
	}
	if err := cfg.AppendLayer(d.layer.DiffID); err != nil {
		return err
	}
	if err := cfg.AppendHistory(ocispec.History{Created: &demoEpoch, CreatedBy: "strata demo", Comment: "embedded demo root filesystem"}); err != nil {
		return err
	}
	b, err := cfg.Bytes()
	if err != nil {
		return err
	}
	desc, err := d.l.PutBytes(ocispec.MediaTypeImageConfig, b)
	if err != nil {
		return err
	}
	d.cfg, d.config = cfg, desc
	d.say("The config says how to run the image and lists the layers' diffIDs.")
	d.say("These changes were applied as strata import --change applies them:")
	for _, c := range demoChanges {
		d.say("  %s", c)
	}
	d.say("config %s (%d bytes):", desc.Digest, desc.Size)
	d.block(indentJSON(b))
	return nil
}

func demoManifest(d *demoRun) error {
	md, err := d.l.PutImage(d.cfg, []ocispec.Descriptor{d.layer.Descriptor}, nil)
	if err != nil {
		return err
	}
	if err := d.l.Tag(md, demoRef); err != nil {
		return err
	}
	d.manifest = md
	mb, err := d.l.ReadBlob(md, layout.MaxManifestSize)
	if err != nil {
		return err
	}
	d.say("The manifest points at the config and the layer by digest:")
	d.say("manifest %s (%d bytes):", md.Digest, md.Size)
	d.block(indentJSON(mb))
	idx, err := os.ReadFile(filepath.Join(d.dir, layout.IndexFile))
	if err != nil {
		return err
	}
	d.say("index.json now names it %q:", demoRef)
	d.block(indentJSON(idx))
	return nil
}

func demoList(d *demoRun) error {
	ents, err := d.l.List()
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := printEntries(&b, ents, false); err != nil {
		return err
	}
	d.block(b.String())
	return nil
}

func demoInspect(d *demoRun) error {
	img, err := d.l.Image(demoRef, nil)
	if err != nil {
		return err
	}
	sum := summarize(img)
	sum.Name = demoRef
	var b strings.Builder
	if err := printSummary(&b, sum); err != nil {
		return err
	}
	d.block(b.String())
	return nil
}

func demoFsck(d *demoRun) error {
	probs, err := d.l.Fsck(context.Background())
	if err != nil {
		return err
	}
	if len(probs) > 0 {
		for _, p := range probs {
			d.say("problem: %s", p)
		}
		return fmt.Errorf("fsck found %d problem(s) in %s", len(probs), d.dir)
	}
	d.say("No problems: every blob's digest and size match, every reference resolves.")
	return nil
}

// demoRebuild repeats the build steps, silently, in a second layout and
// compares the digests.
func demoRebuild(d *demoRun) error {
	tmp, err := os.MkdirTemp("", "strata-demo-again-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	again := &demoRun{out: io.Discard, dir: tmp}
	defer func() {
		if again.l != nil {
			again.l.Close()
		}
	}()
	for _, f := range []func(*demoRun) error{demoInit, demoPack, demoLayer, demoConfig, demoManifest} {
		if err := f(again); err != nil {
			return err
		}
	}
	d.say("second build in %s:", tmp)
	d.say("  layer    %s", again.layer.Descriptor.Digest)
	d.say("  manifest %s", again.manifest.Digest)
	if again.manifest.Digest != d.manifest.Digest {
		return fmt.Errorf("rebuild gave manifest %s, first build %s", again.manifest.Digest, d.manifest.Digest)
	}
	d.say("Identical: fixed file metadata and creation time make the image")
	d.say("reproducible (strata import does the same with --created or SOURCE_DATE_EPOCH).")
	return nil
}

// indentJSON pretty-prints JSON for display, or returns it as it is if it
// cannot.
func indentJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return string(b)
	}
	return out.String()
}
