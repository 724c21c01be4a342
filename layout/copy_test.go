package layout

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/compression"
)

// copyTestImage stores a one-layer image for platform p in l.
func copyTestImage(t *testing.T, l *Layout, p string, k Compression) (ocispec.Descriptor, Layer) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := bytes.Repeat([]byte(p), 1000)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "f", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	ly, err := l.PutLayer(context.Background(), &buf, WithCompression(k))
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig(mustPlatform(t, p))
	if err := cfg.AppendLayer(ly.DiffID); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md, ly
}

func TestCopyImage(t *testing.T) {
	src, err := Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	a, _ := copyTestImage(t, src, "linux/amd64", CompressionGzip)
	b, _ := copyTestImage(t, src, "linux/arm64/v8", CompressionGzip)
	idx, err := src.PutJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{a, b},
	})
	if err != nil {
		t.Fatal(err)
	}
	arm := mustPlatform(t, "linux/arm64")
	amd := mustPlatform(t, "linux/amd64")
	cases := []struct {
		name   string
		opts   CopyOptions
		want   string // digest, or "index" for a rewritten index
		blobs  int
		copied int
	}{
		{"whole index", CopyOptions{AllPlatforms: true}, idx.Digest.String(), 7, 7},
		{"one platform", CopyOptions{Platforms: []ocispec.Platform{arm}}, b.Digest.String(), 3, 3},
		{"two platforms", CopyOptions{Platforms: []ocispec.Platform{arm, amd}}, "index", 7, 6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst, err := Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			copied := 0
			c.opts.OnBlob = func(ocispec.Descriptor, blob.CopyMethod) { copied++ }
			d, err := CopyImage(context.Background(), dst, src, idx, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if c.want == "index" {
				if d.MediaType != ocispec.MediaTypeImageIndex || d.Digest == idx.Digest {
					t.Fatalf("want a rewritten index, got %+v", d)
				}
			} else if d.Digest.String() != c.want {
				t.Fatalf("got %s, want %s", d.Digest, c.want)
			}
			n := 0
			dst.Blobs().Walk(func(_ digest.Digest, _ int64, err error) error { n++; return err })
			if n != c.blobs || copied != c.copied {
				t.Fatalf("%d blobs, %d copied; want %d, %d", n, copied, c.blobs, c.copied)
			}
			if err := dst.Walk(d, func(ocispec.Descriptor, []byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
	// A blob missing from the source fails the copy and names the blob.
	img, _ := src.ReadImage(a)
	if err := src.Blobs().Delete(img.Manifest.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	dst, _ := Init(t.TempDir())
	defer dst.Close()
	if _, err := CopyImage(context.Background(), dst, src, a, CopyOptions{}); !errors.Is(err, blob.ErrNotFound) {
		t.Fatalf("missing layer: %v", err)
	}
}

func TestConvert(t *testing.T) {
	l, err := Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	md, ly := copyTestImage(t, l, "linux/amd64", CompressionGzip)
	if d, err := Convert(context.Background(), l, md, ConvertOptions{}); err != nil || d.Digest != md.Digest {
		t.Fatalf("no-op convert: %v %v", d, err)
	}
	cases := []struct {
		name      string
		o         ConvertOptions
		manifest  string
		layer     string
		sameLayer bool
		err       error
	}{
		{"docker", ConvertOptions{Format: FormatDocker}, MediaTypeDockerManifest, MediaTypeDockerLayerGzip, true, nil},
		{"zstd", ConvertOptions{Compression: CompressionZstd}, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageLayerZstd, false, nil},
		{"none", ConvertOptions{Compression: CompressionNone}, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageLayer, false, nil},
		{"forced gzip", ConvertOptions{Compression: CompressionGzip, Force: true, Level: 1}, ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageLayerGzip, false, nil},
		{"docker zstd", ConvertOptions{Format: FormatDocker, Compression: CompressionZstd}, "", "", false, ErrZstdDocker},
		{"bzip2", ConvertOptions{Compression: compression.Bzip2}, "", "", false, compression.ErrUnsupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := Convert(context.Background(), l, md, c.o)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			img, err := l.ReadImage(d)
			if err != nil {
				t.Fatal(err)
			}
			got := img.Manifest.Layers[0]
			if d.MediaType != c.manifest || got.MediaType != c.layer || (got.Digest == ly.Descriptor.Digest) != c.sameLayer {
				t.Fatalf("manifest %s layer %s %s", d.MediaType, got.MediaType, got.Digest)
			}
			if img.Config.RootFS.DiffIDs[0] != ly.DiffID {
				t.Fatal("diffID changed")
			}
		})
	}
}
