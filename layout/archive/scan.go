package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// One pass over an archive: every regular file is hashed into the
// staging layout's blob store, links and the small JSON files are kept in
// memory, and no entry name is ever used as a path.

// entry is a regular file of the archive, stored as a blob in the staging
// layout.
type entry struct {
	d    digest.Digest
	size int64
}

// scanned is what one pass over an archive found.
type scanned struct {
	files map[string]entry
	links map[string]string // entry name -> name of the entry it points to
	small map[string][]byte // index.json, manifest.json, oci-layout
}

var smallFiles = map[string]bool{"index.json": true, "manifest.json": true, "oci-layout": true}

// scan reads every entry of the archive into tmp's blob store.
func scan(ctx context.Context, r io.Reader, tmp *layout.Layout) (*scanned, error) {
	dr, _, err := compression.NewSniffingReader(r)
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	defer dr.Close()
	a := &scanned{files: map[string]entry{}, links: map[string]string{}, small: map[string][]byte{}}
	seen := map[string]bool{}
	tr := tar.NewReader(dr)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: the archive is empty", ErrInvalidArchive)
			}
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", truncated(err))
		}
		if n >= maxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalidArchive, maxEntries)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if hdr.Typeflag == tar.TypeDir {
			continue
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: entry %s appears twice", ErrInvalidArchive, hdr.Name)
		}
		seen[name] = true
		_, isBlob := blobName(name)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			if err := a.store(ctx, tr, hdr, name, tmp); err != nil {
				return nil, err
			}
		case tar.TypeSymlink, tar.TypeLink:
			if isBlob {
				return nil, fmt.Errorf("%w: blob %s is a link to %s", ErrUnsafeEntry, hdr.Name, hdr.Linkname)
			}
			target, err := linkTarget(name, hdr)
			if err != nil {
				return nil, err
			}
			a.links[name] = target
		default:
			// Devices, fifos and the like have no place in an image
			// archive; strata never creates them, so they are skipped.
			continue
		}
	}
}

// truncated makes a short archive say so.
func truncated(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the archive is truncated: %v", ErrInvalidArchive, err)
	}
	return err
}

func (a *scanned) store(ctx context.Context, tr io.Reader, hdr *tar.Header, name string, tmp *layout.Layout) error {
	if smallFiles[name] {
		if hdr.Size > maxJSONFile {
			return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrInvalidArchive, name, hdr.Size, maxJSONFile)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return fmt.Errorf("read archive entry %s: %w", name, truncated(err))
		}
		a.small[name] = b
		return nil
	}
	want, isBlob := blobName(name)
	if !isBlob && strings.HasPrefix(name, "blobs/") && strings.Count(name, "/") == 2 {
		return fmt.Errorf("%w: entry %s is under blobs/ but is not named by a valid digest", ErrInvalidArchive, name)
	}
	d, size, err := tmp.Blobs().Put(ctx, tr, want, hdr.Size)
	if err != nil {
		if errors.Is(err, blob.ErrDigestMismatch) || errors.Is(err, blob.ErrSizeMismatch) {
			return fmt.Errorf("%w: entry %s: %w", ErrInvalidArchive, name, err)
		}
		return fmt.Errorf("read archive entry %s: %w", name, truncated(err))
	}
	if size != hdr.Size {
		return fmt.Errorf("%w: entry %s: read %d bytes of %d", ErrInvalidArchive, name, size, hdr.Size)
	}
	a.files[name] = entry{d: d, size: size}
	return nil
}

// cleanName checks an entry name and returns it cleaned and relative
// ("./x" is "x"). Absolute names and names that climb out with ".." are
// refused: an archive that has them was made to attack its reader.
func cleanName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry name %q", ErrUnsafeEntry, name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: entry %s has an absolute name", ErrUnsafeEntry, name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("%w: entry %s climbs out of the archive with ..", ErrUnsafeEntry, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return ".", nil
	}
	return c, nil
}

// linkTarget resolves a link entry's target to the name of another entry,
// refusing targets outside the archive.
func linkTarget(name string, hdr *tar.Header) (string, error) {
	t := hdr.Linkname
	if t == "" || strings.HasPrefix(t, "/") {
		return "", fmt.Errorf("%w: link %s points to %q, outside the archive", ErrUnsafeEntry, name, t)
	}
	if hdr.Typeflag == tar.TypeSymlink {
		t = path.Join(path.Dir(name), t)
	} else {
		t = path.Clean(t)
	}
	if t == ".." || strings.HasPrefix(t, "../") || t == "." {
		return "", fmt.Errorf("%w: link %s points to %q, outside the archive", ErrUnsafeEntry, name, hdr.Linkname)
	}
	return t, nil
}

// blobName returns the digest a blobs/<alg>/<hex> entry must have.
func blobName(name string) (digest.Digest, bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || parts[0] != "blobs" {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[1]), parts[2])
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// lookup finds the file an entry name (from manifest.json) stands for,
// following links inside the archive.
func (a *scanned) lookup(ref string) (entry, error) {
	if strings.HasPrefix(ref, "/") {
		return entry{}, fmt.Errorf("%w: %q is outside the archive", ErrUnsafeEntry, ref)
	}
	name, err := cleanName(ref)
	if err != nil {
		return entry{}, err
	}
	for hops := 0; hops <= maxLinkHops; hops++ {
		if e, ok := a.files[name]; ok {
			return e, nil
		}
		t, ok := a.links[name]
		if !ok {
			return entry{}, fmt.Errorf("%w: %s is not in the archive", ErrInvalidArchive, ref)
		}
		name = t
	}
	return entry{}, fmt.Errorf("%w: %s: too many levels of links", ErrInvalidArchive, ref)
}
