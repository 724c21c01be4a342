package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/imagefs"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

func newExportCmd(g *globalFlags) *cobra.Command {
	var out, platform string
	c := &cobra.Command{
		Use:   "export [flags] SRC [-o FILE|-]",
		Short: "Write an image's file system as one tar, as docker export does",
		Long: `Write the merged file system of the image SRC (all its layers applied,
whiteouts removed) as one uncompressed tar, as docker export writes a
container's: in a fixed order (depth first, names sorted, a directory
before what it holds), owners as numbers, mtimes, xattrs, device nodes
and hardlinks kept. The same image always gives the same bytes. Nothing
is unpacked: the layers are read as streams.

SRC is LAYOUT[:REF] (or oci:LAYOUT[:REF]), oci-archive:FILE[:REF] or
docker-archive:FILE[:NAME:TAG]; an archive is first read into a private
layout beside it, removed afterwards. --platform chooses the image of an
index (default: this machine's).

The tar goes to stdout, or to FILE with -o (written under a temporary
name and renamed when complete); a terminal is refused.`,
		Example: `  strata export ./img:v1 -o rootfs.tar
  strata export --platform linux/arm64 ./img:v1 | tar -C /srv/root -xpf -
  strata export oci-archive:app.tar | docker import - app:flat`,
		Args:              exactArgs(1),
		ValidArgsFunction: completeFirstRef,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExport(cmd, args[0], out, platform)
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "-", "write the tar to `FILE` (- for stdout)")
	c.Flags().StringVar(&platform, "platform", "", "image platform `os/arch[/variant]` of an index (default: this machine's)")
	return c
}

func runExport(cmd *cobra.Command, src, out, platform string) error {
	o, err := openOptions(platform)
	if err != nil {
		return err
	}
	var w io.Writer = cmd.OutOrStdout()
	if out == "-" {
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			return usagef("export: refusing to write a tar to a terminal: give -o FILE, or redirect stdout")
		}
	}
	limitMemory()
	ctx, cancel := signalContext()
	defer cancel()
	s, err := imagefs.Open(ctx, src, o)
	if err != nil {
		return err
	}
	defer s.Close()
	if out == "-" {
		return imagefs.Export(ctx, s.Layout, s.Image, w, imagefs.ExportOptions{})
	}
	f, err := newOutputFile(out)
	if err != nil {
		return err
	}
	defer f.discard()
	if err := imagefs.Export(ctx, s.Layout, s.Image, f.File, imagefs.ExportOptions{}); err != nil {
		return err
	}
	return f.commit()
}

// openOptions reads --platform for imagefs.Open.
func openOptions(platform string) (imagefs.OpenOptions, error) {
	var o imagefs.OpenOptions
	if platform != "" {
		p, err := layout.ParsePlatform(platform)
		if err != nil {
			return o, usageError{err}
		}
		o.Platform = &p
	}
	return o, nil
}

// outputFile is a file written in its directory without a name
// (O_TMPFILE) and given its name only when complete, so that a killed
// export leaves nothing behind and an existing FILE stays as it was until
// then. Where the file system has no O_TMPFILE it is written under a
// temporary name instead (fsx.CreateAtomic).
type outputFile struct {
	*os.File
	path   string
	atomic *fsx.AtomicFile
	done   bool
}

func newOutputFile(path string) (*outputFile, error) {
	fd, err := unix.Open(filepath.Dir(path), unix.O_WRONLY|unix.O_TMPFILE|unix.O_CLOEXEC, 0o666)
	if err == unix.EOPNOTSUPP || err == unix.EISDIR {
		a, err := fsx.CreateAtomic(path, 0o644)
		if err != nil {
			return nil, err
		}
		return &outputFile{File: a.File, path: path, atomic: a}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	// The mode is masked by the umask, as a created file's is.
	return &outputFile{File: os.NewFile(uintptr(fd), path), path: path}, nil
}

// commit syncs the file and puts it at its path, replacing what is
// there.
func (f *outputFile) commit() error {
	f.done = true
	if f.atomic != nil {
		return f.atomic.Commit()
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", f.path, err)
	}
	dir, base := filepath.Split(f.path)
	// A name of its own first (linkat cannot replace a file), then a
	// rename over FILE.
	for i := 0; ; i++ {
		tmp := filepath.Join(dir, "."+base+".tmp-"+strconv.Itoa(os.Getpid())+"-"+strconv.Itoa(i))
		err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("write %s: %w", f.path, err)
		}
		return nil
	}
}

// discard drops a file not committed.
func (f *outputFile) discard() {
	switch {
	case f.done:
	case f.atomic != nil:
		f.atomic.Discard()
	default:
		f.Close()
	}
}
