package bundle

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer/merge"
)

// Tree returns the file system the rootfs of the bundle dir holds now,
// for merge.Compare: its image's tree, read from the layers of the
// layout its record names (headers only), with what changed in the
// rootfs since it was unpacked or last committed (what commit's diff
// finds, from the snapshot's file list or the upper directory) applied
// as one more layer, named dir/rootfs. Deletions say which layer made
// them (merge.Options.Removals). Contents of changed files are read from
// the rootfs only when Compare needs them. o says who asks (see Open).
func Tree(ctx context.Context, dir string, o snapshot.StoreOptions) (*merge.Tree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	img, err := recordImage(rec)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	ls := make([]merge.Layer, len(img.Manifest.Layers))
	l := img.l
	for i, ld := range img.Manifest.Layers {
		ls[i] = merge.Layer{Name: ld.Digest.String(), DiffID: img.Config.RootFS.DiffIDs[i],
			Open: func() (io.ReadCloser, error) { return l.Blobs().Open(ld.Digest, ld.Size) }}
	}
	t, err := merge.Read(ctx, ls, merge.Options{Removals: true})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: image %s: %w", dir, rec.Manifest, err)
	}
	d, err := bundleDiff(ctx, abs, o)
	if err != nil {
		return nil, err
	}
	if err := t.ApplyChanges(d, filepath.Join(abs, "rootfs")); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	return t, nil
}

// recordedImage is the image a bundle's record names, in its layout.
type recordedImage struct {
	*layout.Image
	l *layout.Layout
}

// recordImage reads the image a bundle's record names from the layout
// it names (which the bundle keeps as a gc root).
func recordImage(rec *Record) (*recordedImage, error) {
	l, err := layout.Open(rec.Layout)
	if err != nil {
		return nil, err
	}
	size, err := l.Blobs().Stat(rec.Manifest)
	if err != nil {
		return nil, fmt.Errorf("image %s is no longer in layout %s: %w", rec.Manifest, rec.Layout, err)
	}
	img, err := l.ReadImage(ocispec.Descriptor{Digest: rec.Manifest, Size: size})
	if err != nil {
		return nil, err
	}
	if len(img.Config.RootFS.DiffIDs) != len(img.Manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids", rec.Manifest, len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs))
	}
	return &recordedImage{Image: img, l: l}, nil
}
