// Package imagefs works on the merged file system of images in a layout,
// without unpacking them: Export writes it as one tar (as docker export
// writes a container's), Flatten replaces each image by a one-layer image
// of it (as crane flatten does), Read gives it as a tree to walk or to
// compare with another (snapshot/layer/merge.Compare). Open reads an
// image from a layout or, through a private layout, from an archive.
//
// Layers are read as streams from the layout's verified blobs: once for
// their headers (diffIDs checked on the way) and once more for the
// contents an output takes (snapshot/layer/merge).
package imagefs

import (
	"context"
	"fmt"
	"io"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/layer/merge"
)

// Layers returns img's layers (base first) as merge reads them: each
// opened as a verified blob of l, with its diffID. Foreign layers, which
// a layout need not hold, and blobs that are not layers are refused.
func Layers(l *layout.Layout, img *layout.Image) ([]merge.Layer, error) {
	diffIDs := img.Config.RootFS.DiffIDs
	if len(diffIDs) != len(img.Manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids in config %s", img.Descriptor.Digest, len(img.Manifest.Layers), len(diffIDs), img.Manifest.Config.Digest)
	}
	out := make([]merge.Layer, len(img.Manifest.Layers))
	for i, ld := range img.Manifest.Layers {
		if !layout.IsLayer(ld.MediaType) {
			return nil, fmt.Errorf("image %s: layer %d (%s) has media type %q, not a layer", img.Descriptor.Digest, i, ld.Digest, ld.MediaType)
		}
		if ld.MediaType == layout.MediaTypeDockerForeignLayer && !l.Blobs().Has(ld.Digest, ld.Size) {
			return nil, fmt.Errorf("image %s: layer %d (%s) is a foreign layer the layout does not hold", img.Descriptor.Digest, i, ld.Digest)
		}
		out[i] = merge.Layer{
			Name:   ld.Digest.String(),
			DiffID: diffIDs[i],
			Open:   func() (io.ReadCloser, error) { return l.Blobs().Open(ld.Digest, ld.Size) },
		}
	}
	return out, nil
}

// Read returns the merged file system of img, read from its layers'
// headers (see merge.Read).
func Read(ctx context.Context, l *layout.Layout, img *layout.Image, o merge.Options) (*merge.Tree, error) {
	ls, err := Layers(l, img)
	if err != nil {
		return nil, err
	}
	t, err := merge.Read(ctx, ls, o)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	return t, nil
}

// ExportOptions tune Export.
type ExportOptions struct {
	// TempDir holds the spool file of content read ahead of its turn
	// (see merge.WriteOptions); the system's temporary directory when
	// empty.
	TempDir string
}

// Export writes the merged file system of img as one uncompressed tar to
// w, as docker export writes a container's: whiteouts applied, in tree
// order, owners as numbers, xattrs, devices and hardlinks kept, the same
// bytes for the same image every time (see merge.Tree.WriteTar). Nothing
// is written to disk but the spool, when a layer holds contents ahead of
// their turn.
func Export(ctx context.Context, l *layout.Layout, img *layout.Image, w io.Writer, o ExportOptions) error {
	t, err := Read(ctx, l, img, merge.Options{})
	if err != nil {
		return err
	}
	if err := t.WriteTar(ctx, w, merge.WriteOptions{TempDir: o.TempDir}); err != nil {
		return fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	return nil
}
