package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
)

// newImageFlags are the flags import and commit share: the config
// changes, history and layer compression of the image they make.
type newImageFlags struct {
	changes  []string
	message  string
	author   string
	compress string
	level    int
}

// importOptions are the flags of strata import.
type importOptions struct {
	newImageFlags
	platform string
	created  string
	force    bool
}

func newImportCmd(g *globalFlags) *cobra.Command {
	var o importOptions
	c := &cobra.Command{
		Use:   "import [flags] TARBALL|- LAYOUT[:REF]",
		Short: "Make a one-layer image from a root filesystem tarball",
		Long: `Make an image whose only layer is TARBALL ("-" for stdin), as docker import
does, and store it in LAYOUT (created if needed), named REF or, with no REF,
untagged. The manifest digest is printed on stdout.

TARBALL may be plain, gzip, zstd, xz or bzip2 (sniffed from its first
bytes). gzip and zstd tarballs are stored byte for byte (unless
--force-compression); the others are compressed with --compression.
Input that is not a tar archive is refused and nothing is written.

--change applies Dockerfile instructions to the config, as docker import
--change does: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR, in JSON or shell form.

The creation time is --created, else $SOURCE_DATE_EPOCH, else now: with a
fixed time the same tarball and flags give the same digest.`,
		Example: `  strata import rootfs.tar.xz ./img:v1
  tar -C rootfs -c . | strata import -c 'CMD ["/bin/sh"]' -c 'ENV LANG=C.UTF-8' - ./img:v1
  SOURCE_DATE_EPOCH=1700000000 strata import --platform linux/arm64 rootfs.tgz ./img:arm64`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.runImport(cmd, o, args[0], args[1])
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&o.changes, "change", "c", nil, "apply a Dockerfile `instruction` to the config (repeatable)")
	fl.StringVarP(&o.message, "message", "m", "", "history comment for the layer")
	fl.StringVar(&o.author, "author", "", "author of the image")
	fl.StringVar(&o.platform, "platform", "", "image platform `os/arch[/variant]` (default: this machine's)")
	fl.StringVar(&o.created, "created", "", "creation `time`, RFC 3339 or unix seconds (default: $SOURCE_DATE_EPOCH, else now)")
	fl.StringVar(&o.compress, "compression", "gzip", "compression `KIND` for plain, xz and bzip2 input: gzip, zstd or none")
	fl.IntVar(&o.level, "compression-level", 0, "compression level (0: the format's default)")
	fl.BoolVar(&o.force, "force-compression", false, "recompress gzip and zstd input too, with --compression")
	return c
}

// runImport imports the tarball src ("-": stdin) as the image target
// (LAYOUT[:REF]) names and prints its manifest's digest.
func (g *globalFlags) runImport(cmd *cobra.Command, o importOptions, src, target string) error {
	dir, ref, err := parseNewImageArg("import", target)
	if err != nil {
		return err
	}
	iopts, err := o.layoutOptions(cmd, src)
	if err != nil {
		return err
	}
	in, size, closeIn, err := openInput(src)
	if err != nil {
		return err
	}
	defer closeIn()
	// On Ctrl-C or SIGTERM, stop reading (closing the input ends a
	// read blocked on a pipe) and undo what was started.
	ctx := cmd.Context()
	stop := context.AfterFunc(ctx, closeIn)
	defer stop()

	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	prog := g.newProgress()
	iopts.Ref = ref
	res, err := l.Import(ctx, prog.Reader("import "+filepath.Base(src), size, in), iopts)
	prog.Wait()
	if err != nil {
		return importError(ctx, src, dir, l, err)
	}
	l.Close()
	name := dir + ":" + ref
	if ref == "" {
		name = dir + "@" + res.Manifest.Digest.String() + " (untagged)"
	}
	how := "stored as is"
	if res.Layer.Recompressed {
		how = fmt.Sprintf("compressed from %s", res.Layer.Input)
	}
	g.infof("imported %s: layer %s (%d bytes, %s), diffID %s", name, res.Layer.Descriptor.Digest, res.Layer.Descriptor.Size, how, res.Layer.DiffID)
	fmt.Fprintln(cmd.OutOrStdout(), res.Manifest.Digest)
	return nil
}

// layoutOptions checks the flags of cmd, before anything is read or
// created, and turns them into the options of an import of src, all but
// its Ref.
func (o importOptions) layoutOptions(cmd *cobra.Command, src string) (layout.ImportOptions, error) {
	p, err := layout.ParsePlatform(o.platform)
	if err != nil {
		return layout.ImportOptions{}, usageError{err}
	}
	kind, err := compression.ParseKind(o.compress)
	if err != nil {
		return layout.ImportOptions{}, usageError{err}
	}
	layerOpts := []layout.LayerOption{layout.WithCompression(kind)}
	if o.force {
		layerOpts = append(layerOpts, layout.WithRecompress())
	}
	lvl, err := compressionLevel(kind, o.level)
	if err != nil {
		return layout.ImportOptions{}, err
	}
	when, err := createdTime(cmd, "created", o.created)
	if err != nil {
		return layout.ImportOptions{}, err
	}
	if err := dockerfile.Apply(layout.NewConfig(p), o.changes); err != nil {
		return layout.ImportOptions{}, usageError{err}
	}
	return layout.ImportOptions{
		Platform:  p,
		Created:   when,
		Author:    o.author,
		Comment:   o.message,
		CreatedBy: "strata import " + src,
		Edit:      func(c *layout.Config) error { return dockerfile.Apply(c, o.changes) },
		Layer:     append(layerOpts, layout.WithLevel(lvl)),
	}, nil
}

// importError is the error of a failed import of src into the layout l
// at dir, once what the import wrote is taken back.
func importError(ctx context.Context, src, dir string, l *layout.Layout, err error) error {
	u, uerr := l.Undo()
	if ctx.Err() != nil {
		switch {
		case uerr == nil && u.AsItWas():
			return fmt.Errorf("import %s: interrupted; %s is as it was", src, dir)
		case uerr == nil && u.Kept == 0:
			return fmt.Errorf("import %s: interrupted; nothing of it is left in %s, which stays: another process wrote to it meanwhile", src, dir)
		}
		return fmt.Errorf("import %s: interrupted; nothing was named in %s%s", src, dir, undoNote(dir, u, uerr))
	}
	return fmt.Errorf("%s: %w%s", src, err, undoNote(dir, u, uerr))
}

// createdTime picks a reproducible time: the flag named name (value is
// its value) when given, else SOURCE_DATE_EPOCH, else nil for now.
func createdTime(cmd *cobra.Command, name, value string) (*time.Time, error) {
	if cmd.Flags().Changed(name) {
		t, err := layout.ParseCreated(value)
		if err != nil {
			return nil, usagef("--%s: %w", name, err)
		}
		return &t, nil
	}
	if v, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok && v != "" {
		t, err := layout.ParseCreated(v)
		if err != nil {
			return nil, fmt.Errorf("SOURCE_DATE_EPOCH: %w", err)
		}
		return &t, nil
	}
	return nil, nil
}

// parseNewImageArg parses the LAYOUT[:REF] an image is written to: REF
// names the new image, so a digest cannot be one.
func parseNewImageArg(verb, arg string) (dir, ref string, err error) {
	if dir, ref, err = parseRefArg(arg); err != nil {
		return "", "", err
	}
	if _, ok := layout.IsDigestRef(ref); ok {
		return "", "", usagef("%s %s: name the image with a tag, not a digest", verb, arg)
	}
	return dir, ref, nil
}

// compressionLevel turns --compression-level (0: the format's default)
// into a level for kind.
func compressionLevel(kind compression.Kind, level int) (int, error) {
	if level == 0 {
		return compression.DefaultLevel, nil
	}
	if kind == compression.None {
		return 0, usagef("--compression-level needs --compression gzip or zstd")
	}
	return level, nil
}

// openInput opens TARBALL or stdin and returns its size (-1 if unknown).
func openInput(src string) (io.Reader, int64, func(), error) {
	if src == "-" {
		return os.Stdin, -1, func() { os.Stdin.Close() }, nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, 0, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, 0, nil, fmt.Errorf("%s is a directory, not a tarball (tar -C %s -c . | strata import - ...)", src, src)
	}
	size := int64(-1)
	if st.Mode().IsRegular() {
		size = st.Size()
	}
	var once sync.Once
	return f, size, func() { once.Do(func() { f.Close() }) }, nil
}

// undoNote says, for the error of a failed command, what stays in the
// layout dir of what the command wrote (see layout.Undo): nothing when it
// took everything back.
func undoNote(dir string, u layout.Undone, err error) string {
	switch {
	case err != nil:
		return fmt.Sprintf(" (taking back what it wrote to %s: %v)", dir, err)
	case u.Busy && u.Kept > 0:
		return fmt.Sprintf(" (%d blob(s) it wrote stay in %s, which another process is writing to; strata gc removes those no image uses)", u.Kept, dir)
	}
	return ""
}
