package imagefs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layer/merge"
	"github.com/strata-oci/strata/snapshot/layertest"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// fixture is a layout with a two-platform index "v1": amd64 is the
// standard three-layer image, arm64 the same with a fourth layer.
type fixture struct {
	dir   string
	l     *layout.Layout
	index ocispec.Descriptor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	std := layertest.Standard(nil)
	arm := append(append([][]byte{}, std...), layertest.Tar(layertest.File("etc/motd", "arm\n", 0o644), layertest.Whiteout("big")))
	idx, _, err := layertest.BuildIndex(dir, "v1",
		layertest.PlatformImage{Platform: amd64, Layers: std, Cmd: []string{"/bin/sh"},
			Annotations: map[string]string{"org.example.keep": "1", "org.opencontainers.image.base.name": "docker.io/library/debian:12"}},
		layertest.PlatformImage{Platform: arm64, Layers: arm, Cmd: []string{"/bin/sh"}},
	)
	layertest.Must(t, err)
	l, err := layout.Open(dir)
	layertest.Must(t, err)
	t.Cleanup(func() { l.Close() })
	return &fixture{dir: dir, l: l, index: idx}
}

func (f *fixture) image(t *testing.T, root ocispec.Descriptor, p ocispec.Platform) *layout.Image {
	t.Helper()
	md, err := f.l.SelectManifest(root, &p)
	layertest.Must(t, err)
	img, err := f.l.ReadImage(md)
	layertest.Must(t, err)
	return img
}

// exported is Export's tar of img.
func exported(t *testing.T, l *layout.Layout, img *layout.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	layertest.Must(t, imagefs.Export(context.Background(), l, img, &buf, imagefs.ExportOptions{}))
	return buf.Bytes()
}

// blob reads a whole blob.
func blob(t *testing.T, l *layout.Layout, d ocispec.Descriptor) []byte {
	t.Helper()
	r, err := l.Blobs().Open(d.Digest, d.Size)
	layertest.Must(t, err)
	defer r.Close()
	b, err := io.ReadAll(r)
	layertest.Must(t, err)
	return b
}

func TestFlattenEveryPlatform(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	before := map[string][]byte{}
	olds := map[string]*layout.Image{}
	for _, p := range []ocispec.Platform{amd64, arm64} {
		olds[p.Architecture] = f.image(t, f.index, p)
		before[p.Architecture] = exported(t, f.l, olds[p.Architecture])
	}
	res, err := imagefs.Flatten(ctx, f.l, f.index, imagefs.FlattenOptions{Compression: layout.CompressionZstd})
	layertest.Must(t, err)
	if len(res.Images) != 2 || res.Root.Digest == f.index.Digest || res.Root.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("flatten changed %d images, root %+v", len(res.Images), res.Root)
	}
	layertest.Must(t, f.l.VerifyImage(ctx, res.Root, layout.VerifyOptions{DiffIDs: true}))
	for _, p := range []ocispec.Platform{amd64, arm64} {
		img := f.image(t, res.Root, p)
		old := olds[p.Architecture]
		if n := len(img.Manifest.Layers); n != 1 {
			t.Fatalf("%s: %d layers", p.Architecture, n)
		}
		if mt := img.Manifest.Layers[0].MediaType; mt != ocispec.MediaTypeImageLayerZstd {
			t.Errorf("%s: layer media type %s", p.Architecture, mt)
		}
		// The layer is what Export writes, byte for byte.
		dr, err := decompress(blob(t, f.l, img.Manifest.Layers[0]))
		layertest.Must(t, err)
		if !bytes.Equal(dr, before[p.Architecture]) {
			t.Errorf("%s: the flattened layer is not the exported tar", p.Architecture)
		}
		if got := img.Config.RootFS.DiffIDs; len(got) != 1 || got[0] != digest.FromBytes(dr) {
			t.Errorf("%s: diff_ids %v", p.Architecture, got)
		}
		// History: one entry naming the old manifest, the old history in
		// its comment; the rest of the config kept.
		h := img.Config.History
		if len(h) != 1 || h[0].CreatedBy != "strata flatten "+old.Descriptor.Digest.String() || h[0].EmptyLayer {
			t.Fatalf("%s: history %+v", p.Architecture, h)
		}
		var oldHist []ocispec.History
		layertest.Must(t, json.Unmarshal([]byte(h[0].Comment), &oldHist))
		if len(oldHist) != len(old.Config.History) || oldHist[0].CreatedBy != old.Config.History[0].CreatedBy {
			t.Errorf("%s: comment %q", p.Architecture, h[0].Comment)
		}
		if !h[0].Created.Equal(*old.Config.Created) || !img.Config.Created.Equal(*old.Config.Created) {
			t.Errorf("%s: created %v, %v", p.Architecture, h[0].Created, img.Config.Created)
		}
		if strings.Join(img.Config.Config.Cmd, " ") != "/bin/sh" {
			t.Errorf("%s: config %+v", p.Architecture, img.Config.Config)
		}
	}
	amd := f.image(t, res.Root, amd64)
	if a := amd.Manifest.Annotations; a["org.example.keep"] != "1" || a["org.opencontainers.image.base.name"] != "" {
		t.Errorf("annotations %v: want the image's kept and the base's dropped", a)
	}
	// Flattening again gives the same images: the output is deterministic.
	again, err := imagefs.Flatten(ctx, f.l, f.index, imagefs.FlattenOptions{Compression: layout.CompressionZstd})
	layertest.Must(t, err)
	if again.Root.Digest != res.Root.Digest {
		t.Errorf("a second flatten gave %s, the first %s", again.Root.Digest, res.Root.Digest)
	}
}

// decompress decompresses a layer blob, whatever its compression.
func decompress(b []byte) ([]byte, error) {
	r, _, err := compression.NewSniffingReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestFlattenOnePlatform(t *testing.T) {
	f := newFixture(t)
	res, err := imagefs.Flatten(context.Background(), f.l, f.index, imagefs.FlattenOptions{Platforms: []ocispec.Platform{arm64}})
	layertest.Must(t, err)
	if len(res.Images) != 1 || res.Images[0].Platform.Architecture != "arm64" {
		t.Fatalf("changed %+v", res.Images)
	}
	if n := len(f.image(t, res.Root, amd64).Manifest.Layers); n != 3 {
		t.Errorf("amd64 has %d layers, want its 3 kept", n)
	}
	if n := len(f.image(t, res.Root, arm64).Manifest.Layers); n != 1 {
		t.Errorf("arm64 has %d layers, want 1", n)
	}
	_, err = imagefs.Flatten(context.Background(), f.l, f.index, imagefs.FlattenOptions{Platforms: []ocispec.Platform{{OS: "linux", Architecture: "s390x"}}})
	if !errors.Is(err, layout.ErrNoPlatform) {
		t.Errorf("a platform the index lacks: %v", err)
	}
}

func TestExportMatchesExtraction(t *testing.T) {
	layertest.NeedRoot(t)
	f := newFixture(t)
	img := f.image(t, f.index, arm64)
	tar := exported(t, f.l, img)
	got := t.TempDir()
	layertest.Must(t, layer.Apply(context.Background(), got, bytes.NewReader(tar), layer.ApplyOptions{}, layer.Files{}))
	want := t.TempDir()
	files := layer.Files{}
	for _, ld := range img.Manifest.Layers {
		layertest.Must(t, layer.Apply(context.Background(), want, bytes.NewReader(mustDecompress(t, blob(t, f.l, ld))), layer.ApplyOptions{}, files))
	}
	layertest.DiffTrees(t, "layers", layertest.DescribeTree(t, want), "export", layertest.DescribeTree(t, got))
}

func mustDecompress(t *testing.T, b []byte) []byte {
	d, err := decompress(b)
	layertest.Must(t, err)
	return d
}

func TestOpenArchive(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dir := t.TempDir()
	oa := filepath.Join(dir, "img.tar")
	out, err := os.Create(oa)
	layertest.Must(t, err)
	layertest.Must(t, archive.Write(ctx, out, f.l, archive.OCI, []archive.Image{{Descriptor: f.index, Names: []string{"v1"}}}))
	layertest.Must(t, out.Close())
	for _, name := range []string{"oci-archive:" + oa, "oci-archive:" + oa + ":v1", f.dir + ":v1", "oci:" + f.dir + ":v1"} {
		s, err := imagefs.Open(ctx, name, imagefs.OpenOptions{Platform: &arm64})
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		if !bytes.Equal(exported(t, s.Layout, s.Image), exported(t, f.l, f.image(t, f.index, arm64))) {
			t.Errorf("%s: another export", name)
		}
		layertest.Must(t, s.Close())
	}
	// Nothing of the private layout is left beside the archive.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left in %s: %v", dir, ents)
	}
	if _, err := imagefs.Open(ctx, "docker://example.com/x", imagefs.OpenOptions{}); !errors.Is(err, imagefs.ErrUnsupportedSource) {
		t.Errorf("a registry: %v", err)
	}
}

func TestReadWalk(t *testing.T) {
	f := newFixture(t)
	img := f.image(t, f.index, amd64)
	tree, err := imagefs.Read(context.Background(), f.l, img, merge.Options{})
	layertest.Must(t, err)
	if got := tree.Layers(); len(got) != 3 || got[2].Name != img.Manifest.Layers[2].Digest.String() {
		t.Errorf("layers %+v", got)
	}
}

func TestFlattenDockerImage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	img := f.image(t, f.index, amd64)
	dd, err := layout.Convert(ctx, f.l, img.Descriptor, layout.ConvertOptions{Format: layout.FormatDocker})
	layertest.Must(t, err)
	if _, err := imagefs.Flatten(ctx, f.l, dd, imagefs.FlattenOptions{Compression: layout.CompressionZstd}); !errors.Is(err, layout.ErrZstdDocker) {
		t.Fatalf("zstd into a Docker image: %v", err)
	}
	res, err := imagefs.Flatten(ctx, f.l, dd, imagefs.FlattenOptions{})
	layertest.Must(t, err)
	flat, err := f.l.ReadImage(res.Root)
	layertest.Must(t, err)
	if flat.Descriptor.MediaType != layout.MediaTypeDockerManifest || flat.Manifest.Layers[0].MediaType != layout.MediaTypeDockerLayerGzip {
		t.Errorf("a Docker image flattened to %s with a %s layer", flat.Descriptor.MediaType, flat.Manifest.Layers[0].MediaType)
	}
}
