package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// TestDeltaBundle writes an archive without the layer a base holds, reads
// it into a layout holding that layer (merged, verified) and into one
// that does not (refused, naming the layer, nothing changed).
func TestDeltaBundle(t *testing.T) {
	ctx := context.Background()
	src, md := testLayout(t, "example.com/a:1")
	img, err := src.ReadImage(md)
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Manifest.Layers[0]
	base, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	if _, err := layout.CopyImage(ctx, base, src, md, layout.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	// The base holds the blobs but names nothing: its inventory is what
	// it names, so name the image there.
	if err := base.Tag(md, "old"); err != nil {
		t.Fatal(err)
	}
	inv, err := base.Inventory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []Format{OCI, Docker} {
		t.Run(string(f), func(t *testing.T) {
			var full, delta bytes.Buffer
			imgs := []Image{{Descriptor: md, Names: []string{"example.com/a:1"}}}
			if err := Write(ctx, &full, src, f, imgs); err != nil {
				t.Fatal(err)
			}
			wo := WriteOptions{Since: inv}
			if !wo.Omitted(layer) || wo.Omitted(md) || wo.Omitted(img.Manifest.Config) {
				t.Fatal("a delta leaves out layers only")
			}
			if err := WriteWith(ctx, &delta, src, f, imgs, wo); err != nil {
				t.Fatal(err)
			}
			if delta.Len() >= full.Len() {
				t.Fatalf("delta is %d bytes, full %d", delta.Len(), full.Len())
			}
			// The archive inventory finds every blob of the full archive.
			ainv, err := Inventory(ctx, bytes.NewReader(full.Bytes()))
			if err != nil || !ainv.Has(layer.Digest, layer.Size) || !ainv.Has(md.Digest, md.Size) {
				t.Fatalf("inventory of the archive: %v, %v", ainv, err)
			}
			if ainv, _ := Inventory(ctx, bytes.NewReader(delta.Bytes())); ainv.Has(layer.Digest, -1) {
				t.Fatal("the delta holds the layer")
			}

			// Into an empty layout: refused, naming the layer.
			empty, err := layout.Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer empty.Close()
			before := dirState(t, empty.Dir())
			_, err = Read(ctx, bytes.NewReader(delta.Bytes()), empty, ReadOptions{Partial: true})
			var ie *IncompleteError
			if !errors.As(err, &ie) || !errors.Is(err, ErrIncomplete) || !errors.Is(err, ErrInvalidArchive) ||
				len(ie.Missing) != 1 || ie.Missing[0].Digest != layer.Digest {
				t.Fatalf("read into an empty layout: %v", err)
			}
			if after := dirState(t, empty.Dir()); after != before {
				t.Fatalf("refused read changed the layout:\n%s\n---\n%s", before, after)
			}
			// Without Partial the delta is just an incomplete archive.
			if _, err := Read(ctx, bytes.NewReader(delta.Bytes()), base, ReadOptions{}); !errors.Is(err, ErrInvalidArchive) {
				t.Fatalf("read without Partial: %v", err)
			}
			// Into the base: merged and whole.
			got, err := Read(ctx, bytes.NewReader(delta.Bytes()), base, ReadOptions{Partial: true})
			if err != nil || len(got) != 1 || got[0].Descriptor.Digest != md.Digest {
				t.Fatalf("read into the base: %+v, %v", got, err)
			}
			if err := base.VerifyImage(ctx, md, layout.VerifyOptions{DiffIDs: true}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDeltaBundleBadBase: a base whose layer does not match what the
// bundle's config says is caught by the diffID check.
func TestDeltaBundleBadBase(t *testing.T) {
	ctx := context.Background()
	src, md := testLayout(t, "example.com/a:1")
	img, _ := src.ReadImage(md)
	layer := img.Manifest.Layers[0]
	// A bundle whose config claims another diffID for the same layer.
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(digest.FromString("not the layer")); err != nil {
		t.Fatal(err)
	}
	bad, err := src.PutImage(cfg, []ocispec.Descriptor{layer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	inv := layout.NewInventory()
	inv.Add(layer.Digest, layer.Size)
	var delta bytes.Buffer
	if err := WriteWith(ctx, &delta, src, OCI, []Image{{Descriptor: bad, Names: []string{"x:1"}}}, WriteOptions{Since: inv}); err != nil {
		t.Fatal(err)
	}
	dst, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, err := layout.CopyImage(ctx, dst, src, md, layout.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(ctx, &delta, dst, ReadOptions{Partial: true}); !errors.Is(err, layout.ErrDiffIDMismatch) {
		t.Fatalf("a layer from the layout that does not match the bundle's config: %v", err)
	}
}

func FuzzInventory(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/" + string(bytes.Repeat([]byte("a"), 64)), Size: 1})
	tw.Write([]byte("x"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "abc/layer.tar", Size: 2})
	tw.Write([]byte("xy"))
	tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := Inventory(context.Background(), io.LimitReader(bytes.NewReader(b), 1<<20))
		if err == nil {
			for d, s := range inv.Blobs {
				if d.Validate() != nil || s < 0 {
					t.Fatalf("inventory lists %q (%d)", d, s)
				}
			}
		}
	})
}
