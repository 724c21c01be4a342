package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/layout"
)

// Inventory lists the blobs an archive (of either format, compressed or
// not) holds, reading r once: an entry blobs/ALG/HEX counts as that blob,
// any other regular file as the digest of its content (the layer.tar and
// config files of older docker-archives). It is what the far side has
// when it has loaded that archive: the base of a delta bundle. Nothing is
// written anywhere; the entries' names are never used as paths.
func Inventory(ctx context.Context, r io.Reader) (*layout.Inventory, error) {
	dr, _, err := compression.NewSniffingReader(ctxio.Reader(ctx, r))
	if err != nil {
		return nil, fmt.Errorf("read archive: %w", err)
	}
	defer dr.Close()
	inv := layout.NewInventory()
	tr := tar.NewReader(dr)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			if n == 0 {
				return nil, fmt.Errorf("%w: the archive is empty", ErrInvalidArchive)
			}
			return inv, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", truncated(err))
		}
		if n >= maxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrInvalidArchive, maxEntries)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA {
			continue
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		if smallFiles[name] {
			continue
		}
		if d, ok := blobName(name); ok {
			inv.Add(d, hdr.Size)
			continue
		}
		dg := digest.Canonical.Digester()
		m, err := io.Copy(dg.Hash(), tr)
		if err != nil {
			return nil, fmt.Errorf("read archive entry %s: %w", name, truncated(err))
		}
		inv.Add(dg.Digest(), m)
	}
}
