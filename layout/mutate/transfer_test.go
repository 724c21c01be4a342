package mutate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/layout/transport"
	"github.com/strata-oci/strata/snapshot/layertest"
)

func copyImages(t *testing.T, src, dst string, all bool) {
	t.Helper()
	s, err := transport.ParseSource(src)
	layertest.Must(t, err)
	d, err := transport.ParseDestination(dst)
	layertest.Must(t, err)
	_, err = transport.Copy(context.Background(), s, d, transport.CopyOptions{Options: transport.Options{All: all, Copy: layout.CopyOptions{AllPlatforms: true}}})
	layertest.Must(t, err)
}

func labelChange(v string) mutate.Change {
	return func(ctx context.Context, l *layout.Layout, root ocispec.Descriptor) (*mutate.Result, error) {
		return mutate.Mutate(ctx, l, root, mutate.Changes{Labels: []mutate.Setting{{Key: "where", Value: v}}}, nil)
	}
}

// label reads the where label of each platform of ref in the layout dir.
func label(t *testing.T, dir, ref string) []string {
	t.Helper()
	l, err := layout.Open(dir)
	layertest.Must(t, err)
	defer l.Close()
	var out []string
	for _, p := range []ocispec.Platform{amd64, arm64} {
		img, err := l.Image(ref, &p)
		layertest.Must(t, err)
		out = append(out, img.Config.Config.Labels["where"])
	}
	return out
}

func TestTransferArchiveInPlace(t *testing.T) {
	f := newFixture(t)
	// A second image, which must survive the rewrite of the archive.
	other := filepath.Join(t.TempDir(), "other")
	layertest.Must(t, layertest.BuildImage(other, "v2", layertest.Image{Layers: [][]byte{layertest.Tar(layertest.File("x", "x", 0o644))}}))
	arch := filepath.Join(t.TempDir(), "images.tar")
	copyImages(t, "oci:"+f.dir+":v1", "oci-archive:"+arch+":v1", false)
	copyImages(t, "oci:"+other+":v2", "oci:"+f.dir+":v2", false)
	copyImages(t, "oci:"+f.dir, "oci-archive:"+arch, true)

	imgs, res, err := mutate.Transfer(context.Background(), "oci-archive:"+arch+":v1", "", mutate.TransferOptions{}, labelChange("archive"))
	layertest.Must(t, err)
	if len(imgs) != 1 || len(res.Images) != 2 {
		t.Fatalf("%d images changed, %d platforms: want 1, 2", len(imgs), len(res.Images))
	}
	back := filepath.Join(t.TempDir(), "back")
	copyImages(t, "oci-archive:"+arch, "oci:"+back, true)
	if got := label(t, back, "v1"); got[0] != "archive" || got[1] != "archive" {
		t.Errorf("labels %q", got)
	}
	l, err := layout.Open(back)
	layertest.Must(t, err)
	defer l.Close()
	if _, err := l.Resolve("v2"); err != nil {
		t.Errorf("the other image of the archive: %v", err)
	}
	// No leftovers next to the archive.
	ents, err := os.ReadDir(filepath.Dir(arch))
	layertest.Must(t, err)
	if len(ents) != 1 {
		t.Errorf("next to the archive: %v", ents)
	}

	// Several images and no name: refused, the archive unchanged.
	before, err := os.ReadFile(arch)
	layertest.Must(t, err)
	if _, _, err := mutate.Transfer(context.Background(), "oci-archive:"+arch, "", mutate.TransferOptions{}, labelChange("x")); !errors.Is(err, layout.ErrAmbiguous) {
		t.Errorf("got %v, want ErrAmbiguous", err)
	}
	if _, _, err := mutate.Transfer(context.Background(), "oci-archive:"+arch+":v1", "", mutate.TransferOptions{}, func(context.Context, *layout.Layout, ocispec.Descriptor) (*mutate.Result, error) {
		return nil, errors.New("boom")
	}); err == nil {
		t.Errorf("a failing change succeeded")
	}
	after, err := os.ReadFile(arch)
	layertest.Must(t, err)
	if string(before) != string(after) {
		t.Errorf("the archive changed")
	}
	if _, _, err := mutate.Transfer(context.Background(), "oci:"+f.dir+":v1", "", mutate.TransferOptions{}, labelChange("x")); !errors.Is(err, mutate.ErrInPlace) {
		t.Errorf("layout in place: got %v, want ErrInPlace", err)
	}
}

func TestTransferBetweenTransports(t *testing.T) {
	f := newFixture(t)
	arch := filepath.Join(t.TempDir(), "img.tar")
	// Layout to archive: the source layout is not written to.
	blobs := countBlobs(t, f.dir)
	_, _, err := mutate.Transfer(context.Background(), f.dir+":v1", "docker-archive:"+arch+":example.com/app:v1", mutate.TransferOptions{Select: []ocispec.Platform{arm64}}, labelChange("docker"))
	layertest.Must(t, err)
	if n := countBlobs(t, f.dir); n != blobs {
		t.Errorf("source layout has %d blobs, had %d", n, blobs)
	}
	// Archive to a new layout.
	out := filepath.Join(t.TempDir(), "out")
	imgs, _, err := mutate.Transfer(context.Background(), "docker-archive:"+arch, "oci:"+out+":v9", mutate.TransferOptions{}, labelChange("layout"))
	layertest.Must(t, err)
	if len(imgs) != 1 {
		t.Fatalf("%d images", len(imgs))
	}
	l, err := layout.Open(out)
	layertest.Must(t, err)
	defer l.Close()
	img, err := l.Image("v9", &arm64)
	layertest.Must(t, err)
	if got := img.Config.Config.Labels["where"]; got != "layout" {
		t.Errorf("label %q", got)
	}
}
