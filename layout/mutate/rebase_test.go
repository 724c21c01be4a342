package mutate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// baseImages builds, in a layout of its own, two-platform bases "base:1"
// (two layers and an ENV entry) and "base:2" (three other layers).
func baseImages(t *testing.T) (dir string, l *layout.Layout, b1, b2 ocispec.Descriptor) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "bases")
	at := func(h int) *time.Time { v := layertest.Epoch.Add(time.Duration(h) * time.Hour).UTC(); return &v }
	for _, v := range []struct {
		tag  string
		n    int
		hist func(p string) []ocispec.History
	}{
		{"base:1", 2, func(p string) []ocispec.History {
			return []ocispec.History{{Created: at(1), CreatedBy: "base1 " + p + " layer 1"}, {Created: at(2), CreatedBy: "ENV X=1", EmptyLayer: true}, {Created: at(3), CreatedBy: "base1 " + p + " layer 2"}}
		}},
		{"base:2", 3, func(p string) []ocispec.History {
			return []ocispec.History{{Created: at(4), CreatedBy: "base2 " + p + " layer 1"}, {Created: at(5), CreatedBy: "base2 " + p + " layer 2"}, {Created: at(6), CreatedBy: "base2 " + p + " layer 3"}}
		}},
	} {
		var imgs []layertest.PlatformImage
		for _, p := range []ocispec.Platform{amd64, arm64} {
			var layers [][]byte
			for i := 0; i < v.n; i++ {
				layers = append(layers, layertest.Tar(layertest.File("etc/"+v.tag[5:]+"-"+p.Architecture+"-"+string(rune('a'+i)), v.tag+"\n", 0o644)))
			}
			imgs = append(imgs, layertest.PlatformImage{Platform: p, Layers: layers, History: v.hist(p.Architecture), Env: []string{"BASE=" + v.tag}})
		}
		d, _, err := layertest.BuildIndex(dir, v.tag, imgs...)
		layertest.Must(t, err)
		if v.tag == "base:1" {
			b1 = d
		} else {
			b2 = d
		}
	}
	l, err := layout.Open(dir)
	layertest.Must(t, err)
	t.Cleanup(func() { l.Close() })
	return dir, l, b1, b2
}

// appImage makes, in the layout at dir, "app": base:1 (copied from bl)
// with two layers of its own, its base recorded in annotations.
func appImage(t *testing.T, dir string, bl *layout.Layout, b1 ocispec.Descriptor) (*layout.Layout, ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Init(dir)
	layertest.Must(t, err)
	t.Cleanup(func() { l.Close() })
	d, err := layout.CopyImage(context.Background(), l, bl, b1, layout.CopyOptions{AllPlatforms: true})
	layertest.Must(t, err)
	app := filepath.Join(t.TempDir(), "app.tar")
	layertest.Must(t, writeFile(app, layertest.Tar(layertest.File("app/bin", "app\n", 0o755))))
	conf := filepath.Join(t.TempDir(), "conf.tar")
	layertest.Must(t, writeFile(conf, layertest.Tar(layertest.File("app/conf", "conf\n", 0o644))))
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := mutate.Append(context.Background(), l, d, []mutate.Source{{Path: app}, {Path: conf}}, mutate.AppendOptions{Created: &created, Base: &mutate.Base{Name: "base:1", Descriptor: b1}})
	layertest.Must(t, err)
	m, err := mutate.Mutate(context.Background(), l, res.Root, mutate.Changes{Cmd: &[]string{"/app/bin"}}, nil)
	layertest.Must(t, err)
	layertest.Must(t, l.Tag(m.Root, "app"))
	return l, m.Root
}

func imageOf(t *testing.T, l *layout.Layout, root ocispec.Descriptor, p ocispec.Platform) *layout.Image {
	t.Helper()
	md, err := l.SelectManifest(root, &p)
	layertest.Must(t, err)
	img, err := l.ReadImage(md)
	layertest.Must(t, err)
	return img
}

func TestRebase(t *testing.T) {
	_, bl, b1, b2 := baseImages(t)
	l, app := appImage(t, filepath.Join(t.TempDir(), "app"), bl, b1)
	res, err := mutate.Rebase(context.Background(), l, app, mutate.RebaseOptions{
		OldBase: &mutate.Ref{Layout: bl, Descriptor: b1},
		NewBase: &mutate.Ref{Layout: bl, Descriptor: b2, Name: "base:2"},
	})
	layertest.Must(t, err)
	if len(res.Images) != 2 {
		t.Fatalf("%d images rebased", len(res.Images))
	}
	for _, p := range []ocispec.Platform{amd64, arm64} {
		before := imageOf(t, l, app, p)
		nu := imageOf(t, bl, b2, p)
		img := imageOf(t, l, res.Root, p)
		var want []digest.Digest
		for _, d := range nu.Manifest.Layers {
			want = append(want, d.Digest)
		}
		for _, d := range before.Manifest.Layers[2:] {
			want = append(want, d.Digest)
		}
		var got []digest.Digest
		for _, d := range img.Manifest.Layers {
			got = append(got, d.Digest)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: layers %v, want %v", p.Architecture, got, want)
		}
		if wantIDs := append(slices.Clone(nu.Config.RootFS.DiffIDs), before.Config.RootFS.DiffIDs[2:]...); !slices.Equal(img.Config.RootFS.DiffIDs, wantIDs) {
			t.Errorf("%s: diff_ids %v", p.Architecture, img.Config.RootFS.DiffIDs)
		}
		var by []string
		for _, h := range img.Config.History {
			by = append(by, h.CreatedBy)
		}
		a := p.Architecture
		if wantBy := []string{"base2 " + a + " layer 1", "base2 " + a + " layer 2", "base2 " + a + " layer 3", "/app.tar", "/conf.tar"}; !sameSuffixes(by, wantBy) {
			t.Errorf("%s: history %q, want %q", a, by, wantBy)
		}
		// The image's own config is kept: Cmd, and Env (the old base's
		// ENV stays, as crane keeps it).
		if !slices.Equal(img.Config.Config.Cmd, []string{"/app/bin"}) || !slices.Equal(img.Config.Config.Env, []string{"BASE=base:1"}) {
			t.Errorf("%s: config %+v", a, img.Config.Config)
		}
		if !img.Config.Created.Equal(*before.Config.Created) || img.Config.Architecture != a {
			t.Errorf("%s: created %v, architecture %s", a, img.Config.Created, img.Config.Architecture)
		}
		if got := img.Manifest.Annotations; got[ocispec.AnnotationBaseImageDigest] != b2.Digest.String() || got[ocispec.AnnotationBaseImageName] != "base:2" {
			t.Errorf("%s: annotations %v", a, got)
		}
		layertest.Must(t, l.VerifyImage(context.Background(), img.Descriptor, layout.VerifyOptions{DiffIDs: true}))
	}

	// The same by the image's annotations alone: base.digest finds
	// base:1's index in the layout, and base.name "base:1", now naming
	// base:2's image (a base updated since), is the new base.
	bd, err := layout.CopyImage(context.Background(), l, bl, b2, layout.CopyOptions{AllPlatforms: true})
	layertest.Must(t, err)
	layertest.Must(t, l.Tag(bd, "base:1"))
	again, err := mutate.Rebase(context.Background(), l, app, mutate.RebaseOptions{})
	layertest.Must(t, err)
	for _, p := range []ocispec.Platform{amd64, arm64} {
		img, want := imageOf(t, l, again.Root, p), imageOf(t, l, res.Root, p)
		if !slices.Equal(img.Config.RootFS.DiffIDs, want.Config.RootFS.DiffIDs) || img.Manifest.Annotations[ocispec.AnnotationBaseImageName] != "base:1" {
			t.Errorf("%s: rebased by annotations: diff_ids %v, annotations %v", p.Architecture, img.Config.RootFS.DiffIDs, img.Manifest.Annotations)
		}
	}
}

// sameSuffixes says whether each of got ends with the same one of want.
func sameSuffixes(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasSuffix(got[i], want[i]) {
			return false
		}
	}
	return true
}

func writeFile(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

func TestRebaseNotBasedOn(t *testing.T) {
	_, bl, b1, b2 := baseImages(t)
	l, app := appImage(t, filepath.Join(t.TempDir(), "app"), bl, b1)
	blobs := countBlobs(t, l.Dir())
	_, err := mutate.Rebase(context.Background(), l, app, mutate.RebaseOptions{
		OldBase: &mutate.Ref{Layout: bl, Descriptor: b2},
		NewBase: &mutate.Ref{Layout: bl, Descriptor: b1},
	})
	var nb *mutate.NotBasedOnError
	if !errors.As(err, &nb) || !errors.Is(err, mutate.ErrNotBasedOn) {
		t.Fatalf("got %v, want a NotBasedOnError", err)
	}
	if nb.Layer != 1 || nb.Got.Digest == "" || nb.Want.Digest == "" {
		t.Errorf("error %+v: want layer 1 named", nb)
	}
	// A diff_id that differs where the digest is the same is refused too.
	img := imageOf(t, l, app, amd64)
	cfg, err := layout.ParseConfig(img.ConfigRaw)
	layertest.Must(t, err)
	ids := slices.Clone(img.Config.RootFS.DiffIDs)
	ids[1] = digest.FromString("other")
	layertest.Must(t, cfg.Set("rootfs", ocispec.RootFS{Type: "layers", DiffIDs: ids}))
	forged, err := mutate.PutConfig(l, img, cfg)
	layertest.Must(t, err)
	_, err = mutate.Rebase(context.Background(), l, forged, mutate.RebaseOptions{
		OldBase: &mutate.Ref{Layout: bl, Descriptor: b1},
		NewBase: &mutate.Ref{Layout: bl, Descriptor: b2},
	})
	if !errors.As(err, &nb) || nb.Layer != 2 || nb.GotDiffID != ids[1] {
		t.Fatalf("got %v, want layer 2's diff_id named", err)
	}
	if _, err := mutate.Rebase(context.Background(), l, imageOf(t, bl, b1, amd64).Descriptor, mutate.RebaseOptions{}); !errors.Is(err, mutate.ErrNoBase) {
		t.Errorf("no base: got %v, want ErrNoBase", err)
	}
	// Only the forged config and manifest were written.
	if n := countBlobs(t, l.Dir()); n != blobs+2 {
		t.Errorf("%d blobs, want %d", n, blobs+2)
	}
}

func TestRebaseOnePlatform(t *testing.T) {
	_, bl, b1, b2 := baseImages(t)
	l, app := appImage(t, filepath.Join(t.TempDir(), "app"), bl, b1)
	res, err := mutate.Rebase(context.Background(), l, app, mutate.RebaseOptions{
		Platforms: []ocispec.Platform{arm64},
		OldBase:   &mutate.Ref{Layout: bl, Descriptor: b1},
		NewBase:   &mutate.Ref{Layout: bl, Descriptor: b2},
	})
	layertest.Must(t, err)
	if len(res.Images) != 1 || res.Images[0].Platform.Architecture != "arm64" {
		t.Fatalf("rebased %+v", res.Images)
	}
	if imageOf(t, l, res.Root, amd64).Descriptor.Digest != imageOf(t, l, app, amd64).Descriptor.Digest {
		t.Errorf("amd64 changed")
	}
	// A new base without the image's platform is refused.
	arm := imageOf(t, bl, b2, arm64).Descriptor
	_, err = mutate.Rebase(context.Background(), l, app, mutate.RebaseOptions{
		OldBase: &mutate.Ref{Layout: bl, Descriptor: b1},
		NewBase: &mutate.Ref{Layout: bl, Descriptor: arm},
	})
	if !errors.Is(err, layout.ErrNoPlatform) {
		t.Errorf("got %v, want ErrNoPlatform", err)
	}
}
