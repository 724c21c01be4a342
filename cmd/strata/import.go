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

func newImportCmd(g *globalFlags) *cobra.Command {
	var (
		changes     []string
		message     string
		author      string
		platform    string
		created     string
		compress    string
		level       int
		force       bool
		createdByOf = func(src string) string { return "strata import " + src }
	)
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
			src := args[0]
			dir, ref, err := parseNewImageArg("import", args[1])
			if err != nil {
				return err
			}
			p, err := layout.ParsePlatform(platform)
			if err != nil {
				return usageError{err}
			}
			kind, err := compression.ParseKind(compress)
			if err != nil {
				return usageError{err}
			}
			layerOpts := []layout.LayerOption{layout.WithCompression(kind)}
			if force {
				layerOpts = append(layerOpts, layout.WithRecompress())
			}
			lvl, err := compressionLevel(kind, level)
			if err != nil {
				return err
			}
			when, err := createdTime(cmd, "created", created)
			if err != nil {
				return err
			}
			// Check the changes before anything is read or created.
			if err := dockerfile.Apply(layout.NewConfig(p), changes); err != nil {
				return usageError{err}
			}

			in, size, closeIn, err := openInput(src)
			if err != nil {
				return err
			}
			defer closeIn()
			// On Ctrl-C or SIGTERM, stop reading (closing the input ends a
			// read blocked on a pipe) and undo what was started.
			ctx, cancel := signalContext()
			defer cancel()
			stop := context.AfterFunc(ctx, closeIn)
			defer stop()

			l, err := layout.Init(dir)
			if err != nil {
				return err
			}
			prog := g.newProgress()
			res, err := l.Import(ctx, prog.Reader("import "+filepath.Base(src), size, in), layout.ImportOptions{
				Platform:  p,
				Created:   when,
				Author:    author,
				Comment:   message,
				CreatedBy: createdByOf(src),
				Edit:      func(c *layout.Config) error { return dockerfile.Apply(c, changes) },
				Layer:     append(layerOpts, layout.WithLevel(lvl)),
				Ref:       ref,
			})
			prog.Wait()
			if err != nil {
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
		},
	}
	fl := c.Flags()
	fl.StringArrayVarP(&changes, "change", "c", nil, "apply a Dockerfile `instruction` to the config (repeatable)")
	fl.StringVarP(&message, "message", "m", "", "history comment for the layer")
	fl.StringVar(&author, "author", "", "author of the image")
	fl.StringVar(&platform, "platform", "", "image platform `os/arch[/variant]` (default: this machine's)")
	fl.StringVar(&created, "created", "", "creation `time`, RFC 3339 or unix seconds (default: $SOURCE_DATE_EPOCH, else now)")
	fl.StringVar(&compress, "compression", "gzip", "compression `KIND` for plain, xz and bzip2 input: gzip, zstd or none")
	fl.IntVar(&level, "compression-level", 0, "compression level (0: the format's default)")
	fl.BoolVar(&force, "force-compression", false, "recompress gzip and zstd input too, with --compression")
	return c
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
