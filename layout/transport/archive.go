package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"golang.org/x/sys/unix"
)

// What "-" means as an archive file: the process's stdin and stdout
// (tests set others).
var (
	stdin  io.Reader = os.Stdin
	stdout io.Writer = os.Stdout
)

func init() {
	for _, f := range []archive.Format{archive.Docker, archive.OCI} {
		f := f
		register(transport{
			Name: string(f),
			NewSource: func(ref string) (Source, error) {
				a, err := parseArchive(f, ref)
				if err != nil {
					return nil, err
				}
				if len(a.names) > 1 {
					return nil, fmt.Errorf("%w %q: a source is selected by one name", ErrInvalidName, a.String())
				}
				return a, nil
			},
			NewDestination: func(ref string) (Destination, error) {
				a, err := parseArchive(f, ref)
				if err != nil {
					return nil, err
				}
				for _, n := range a.names {
					if strings.HasPrefix(n, "@") {
						return nil, fmt.Errorf("%w %q: a destination is named by a name, not @N or a digest", ErrInvalidName, n)
					}
				}
				return a, nil
			},
		})
	}
}

// archiveRef is docker-archive:FILE[:NAME:TAG] or oci-archive:FILE[:REF].
// FILE "-" is stdin or stdout.
type archiveRef struct {
	format archive.Format
	file   string
	names  []string
}

func parseArchive(f archive.Format, ref string) (*archiveRef, error) {
	file, rest, _ := cutRef(ref)
	if file == "" {
		return nil, fmt.Errorf("%w %q: empty archive path", ErrInvalidName, string(f)+":"+ref)
	}
	names, err := splitNames(rest)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if isSelector(n) {
			continue
		}
		if f == archive.Docker {
			if archive.DockerTag(n) == "" {
				return nil, fmt.Errorf("%w %q: a docker-archive name is NAME[:TAG]", ErrInvalidName, n)
			}
			continue
		}
		if err := layout.ValidateRef(n); err != nil {
			return nil, err
		}
	}
	return &archiveRef{format: f, file: file, names: names}, nil
}

// isSelector reports whether a source name picks an image by number (@N)
// or digest (@sha256:...) rather than by name.
func isSelector(n string) bool {
	rest, ok := strings.CutPrefix(n, "@")
	if !ok || rest == "" {
		return false
	}
	if strings.Trim(rest, "0123456789") == "" {
		return true
	}
	return digest.Digest(rest).Validate() == nil
}

func (a *archiveRef) String() string {
	s := string(a.format) + ":" + a.file
	for i, n := range a.names {
		if i == 0 {
			s += ":" + n
		} else {
			s += "," + n
		}
	}
	return s
}

func (a *archiveRef) Names() []string { return a.names }

func (a *archiveRef) fullNames() bool { return true }

// Fetch reads the archive (either format is accepted whatever the
// transport's name) into dst, in one streaming pass.
func (a *archiveRef) Fetch(ctx context.Context, dst *layout.Layout, opts Options) ([]Image, error) {
	var r io.Reader
	if a.file == "-" {
		r = stdin
	} else {
		f, err := os.Open(a.file)
		if err != nil {
			return nil, fmt.Errorf("open archive: %w", err)
		}
		defer f.Close()
		r = f
	}
	ro := archive.ReadOptions{Copy: opts.Copy, Partial: opts.Partial, Referrers: opts.Referrers}
	if len(a.names) == 1 {
		ro.Name = a.names[0]
	}
	got, err := archive.Read(ctx, bufio.NewReaderSize(r, 1<<20), dst, ro)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", a.file, err)
	}
	out := make([]Image, len(got))
	for i, g := range got {
		out[i] = Image{Descriptor: g.Descriptor, Names: g.Names, Referrers: g.Referrers}
	}
	return out, nil
}

// StagingDir keeps staging on the archive's filesystem.
func (a *archiveRef) StagingDir() string {
	if a.file == "-" {
		return ""
	}
	return filepath.Dir(a.file)
}

// Put writes the archive. A file is written under a temporary name and
// renamed into place when complete, so a failed write leaves no archive and
// an existing one unchanged.
func (a *archiveRef) Put(ctx context.Context, src *layout.Layout, imgs []Image, opts Options) error {
	wo := archive.WriteOptions{Since: opts.Since}
	in := make([]archive.Image, len(imgs))
	for i, img := range imgs {
		in[i] = archive.Image{Descriptor: img.Descriptor, Names: img.Names, Referrers: img.Referrers}
	}
	if a.file == "-" {
		bw := bufio.NewWriterSize(stdout, 1<<20)
		if err := archive.WriteWith(ctx, bw, src, a.format, in, wo); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := createArchiveTemp(a.file)
	if err != nil {
		return fmt.Errorf("create archive %s: %w", a.file, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.Remove(f.Name()) // while still locked: nobody else's
			f.Close()
		}
	}()
	dw := newDirectWriter(f)
	if err := archive.WriteWith(ctx, dw, src, a.format, in, wo); err != nil {
		dw.Close()
		return err
	}
	if err := dw.Close(); err != nil {
		return fmt.Errorf("write archive %s: %w", a.file, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("write archive %s: %w", a.file, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write archive %s: %w", a.file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write archive %s: %w", a.file, err)
	}
	if err := os.Rename(f.Name(), a.file); err != nil {
		return fmt.Errorf("write archive %s: %w", a.file, err)
	}
	ok = true
	return nil
}

// archiveTempPrefix is how the temporary files of archive file start.
func archiveTempPrefix(file string) string { return "." + filepath.Base(file) + ".tmp-" }

// createArchiveTemp makes the temporary file the archive file is written
// to, next to it, and locks it for as long as it is written (the lock
// goes with the file's last descriptor). What killed writers of the same
// archive left, files nobody holds locked, is removed first.
func createArchiveTemp(file string) (*os.File, error) {
	dir, prefix := filepath.Dir(file), archiveTempPrefix(file)
	sweepArchiveTemps(file)
	for attempt := 0; ; attempt++ {
		f, err := os.CreateTemp(dir, prefix+"*")
		if err != nil {
			return nil, err
		}
		if err := flockWait(f, unix.LOCK_EX); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
		// Another writer's sweep may have locked and removed it between
		// its creation and our lock: then start over.
		if fi, err := f.Stat(); err == nil {
			if pi, err := os.Lstat(f.Name()); err == nil && os.SameFile(fi, pi) {
				return f, nil
			}
		}
		f.Close()
		if attempt >= 8 {
			return nil, fmt.Errorf("temporary file in %s removed by a concurrent writer %d times", dir, attempt+1)
		}
	}
}

// sweepArchiveTemps removes the temporary files of archive file that no
// live writer holds: what writers killed while writing it left. It
// returns how many it removed.
func sweepArchiveTemps(file string) int {
	dir, prefix := filepath.Dir(file), archiveTempPrefix(file)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil && os.Remove(p) == nil {
			n++
		}
		f.Close()
	}
	return n
}

func flockWait(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}
