package imagefs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/transport"
)

// ErrUnsupportedSource means an image name names something Open does not
// read in place (a registry).
var ErrUnsupportedSource = errors.New("unsupported image source")

// Source is one platform's image, open for reading: in a layout, or in
// the private layout an archive was read into.
type Source struct {
	Layout *layout.Layout
	Image  *layout.Image
	// Name is the name it was opened by.
	Name string
	work *tempdir.Dir
}

// Close closes the layout and removes an archive's private layout.
func (s *Source) Close() error {
	err := s.Layout.Close()
	if s.work != nil {
		if rerr := s.work.Remove(); err == nil {
			err = rerr
		}
	}
	return err
}

// OpenOptions say which image Open reads.
type OpenOptions struct {
	// Platform chooses the image of an index; nil is the host's. A
	// single image of another platform than one given is refused
	// (layout.ErrNoPlatform); with none, it is taken.
	Platform *ocispec.Platform
}

// archivePrefixes are the transports Open reads through a private layout.
var archivePrefixes = []string{"oci-archive:", "docker-archive:"}

// IsArchive says whether name is an archive transport name.
func IsArchive(name string) bool {
	for _, p := range archivePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Open opens the image name names: LAYOUT[:REF] (or oci:LAYOUT[:REF]), or
// an archive, oci-archive:FILE[:REF] or docker-archive:FILE[:NAME:TAG]
// (FILE "-" is stdin), as skopeo names them. An archive is read whole and
// verified (every layer against its diffID) into a private layout, beside
// FILE (for stdin, in the system's temporary directory), holding only
// the platform asked for; Close removes it, and so does the next
// command's sweep when this process is killed. Registries are not read:
// pull the image first.
func Open(ctx context.Context, name string, o OpenOptions) (*Source, error) {
	p := o.Platform
	if p == nil {
		host, err := layout.ParsePlatform("")
		if err != nil {
			return nil, err
		}
		p = &host
	}
	if !IsArchive(name) {
		if strings.HasPrefix(name, "docker://") {
			return nil, fmt.Errorf("%s: %w: a registry is not read", name, ErrUnsupportedSource)
		}
		dir, ref, err := layout.SplitRef(strings.TrimPrefix(name, "oci:"))
		if err != nil {
			return nil, err
		}
		l, err := layout.Open(dir)
		if err != nil {
			return nil, err
		}
		img, err := l.Image(ref, p)
		if err == nil {
			err = checkPlatform(img, o.Platform)
		}
		if err != nil {
			l.Close()
			return nil, err
		}
		return &Source{Layout: l, Image: img, Name: name}, nil
	}
	src, err := transport.ParseSource(name)
	if err != nil {
		return nil, err
	}
	base := ""
	if sd, ok := src.(interface{ StagingDir() string }); ok {
		base = sd.StagingDir()
	}
	work, err := tempdir.Make(base, layout.CopyWorkPrefix)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	s := &Source{Name: name, work: work}
	ok := false
	defer func() {
		if !ok {
			if s.Layout != nil {
				s.Layout.Close()
			}
			work.Remove()
		}
	}()
	if s.Layout, err = layout.Init(filepath.Join(work.Path, "layout")); err != nil {
		return nil, err
	}
	imgs, err := src.Fetch(ctx, s.Layout, transport.Options{Copy: layout.CopyOptions{Platforms: []ocispec.Platform{*p}}})
	if err != nil {
		return nil, err
	}
	if len(imgs) != 1 {
		file, _, _ := strings.Cut(strings.SplitN(name, ":", 2)[1], ":")
		return nil, fmt.Errorf("%s holds %d images: %w: name one as %s:NAME", file, len(imgs), layout.ErrAmbiguous, name)
	}
	md, err := s.Layout.SelectManifest(imgs[0].Descriptor, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if s.Image, err = s.Layout.ReadImage(md); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := checkPlatform(s.Image, o.Platform); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	ok = true
	return s, nil
}

// checkPlatform refuses an image of one platform when another was asked
// for: an index chooses by platform, but a single manifest is taken
// whatever its platform, and one of another platform must not be read
// in place of the one asked for.
func checkPlatform(img *layout.Image, want *ocispec.Platform) error {
	if want == nil {
		return nil
	}
	got := ocispec.Platform{OS: img.Config.OS, Architecture: img.Config.Architecture, Variant: img.Config.Variant}
	if got.OS == "" && got.Architecture == "" {
		return nil // the config does not say
	}
	if !platforms.Only(platforms.Normalize(*want)).Match(platforms.Normalize(got)) {
		return fmt.Errorf("image %s is for %s: %w %s", img.Descriptor.Digest, platforms.Format(got), layout.ErrNoPlatform, platforms.Format(*want))
	}
	return nil
}
