package transport

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// signedImage makes a layout at dir with an image named name, an SBOM
// attached to it, a signature attached to the SBOM, and a cosign-style
// signature under the image's sha256-<hex>.sig tag. It returns the
// image's digest and the three referrers' digests.
func signedImage(t *testing.T, dir, name string) (digest.Digest, []digest.Digest) {
	t.Helper()
	randomImage(t, dir, name, 1, 100)
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	img, err := l.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	file := layout.ArtifactFile{Name: "sbom.json", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(`{"spdxVersion":"SPDX-2.3"}`)), nil
	}}
	sbom, err := l.Attach(ctx, img, layout.AttachOptions{ArtifactType: "application/spdx+json", Files: []layout.ArtifactFile{file}})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := l.Attach(ctx, sbom, layout.AttachOptions{ArtifactType: "application/vnd.example.sig"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	cosign, err := l.PutImage(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo := name[:strings.LastIndexByte(name, ':')]
	if err := l.Tag(cosign, repo+":"+layout.CosignTag(img.Digest, ".sig")); err != nil {
		t.Fatal(err)
	}
	return img.Digest, []digest.Digest{sbom.Digest, sig.Digest, cosign.Digest}
}

func referrersIn(t *testing.T, dir string, root digest.Digest) []digest.Digest {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ri, err := l.ReferrerIndex(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	d, err := l.Resolve("@" + root.String())
	if err != nil {
		t.Fatal(err)
	}
	refs, err := ri.Closure(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, r := range refs {
		out = append(out, r.Descriptor.Digest)
	}
	slices.Sort(out)
	return out
}

func layoutNames(t *testing.T, dir string) []string {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ents, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return out
}

// Referrers travel layout -> oci-archive -> layout -> docker-archive ->
// layout with the same digests, untagged, and cosign's signature under
// its tag in the image's repository; without Referrers they stay behind.
func TestCopyReferrersThroughArchives(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img, want := signedImage(t, src, "example.com/app:v1")
	slices.Sort(want)
	o := CopyOptions{Options: Options{Referrers: true}}
	steps := []struct{ from, to string }{
		{"oci:" + src + ":example.com/app:v1", "oci-archive:" + filepath.Join(dir, "a.tar")},
		{"oci-archive:" + filepath.Join(dir, "a.tar"), "oci:" + filepath.Join(dir, "mid")},
		{"oci:" + filepath.Join(dir, "mid") + ":example.com/app:v1", "docker-archive:" + filepath.Join(dir, "d.tar")},
		{"docker-archive:" + filepath.Join(dir, "d.tar"), "oci:" + filepath.Join(dir, "dst")},
		{"oci:" + filepath.Join(dir, "dst"), "oci:" + filepath.Join(dir, "dst2") + ":v2"},
	}
	for _, s := range steps {
		imgs, err := copyNames(t, ctx, s.from, s.to, o)
		if err != nil {
			t.Fatalf("%s -> %s: %v", s.from, s.to, err)
		}
		if len(imgs) != 1 || imgs[0].Descriptor.Digest != img || len(imgs[0].Referrers) != 3 {
			t.Fatalf("%s -> %s: copied %+v", s.from, s.to, imgs)
		}
	}
	for _, d := range []string{"mid", "dst"} {
		if got := referrersIn(t, filepath.Join(dir, d), img); !slices.Equal(got, want) {
			t.Errorf("%s: referrers %v, want %v", d, got, want)
		}
		names := layoutNames(t, filepath.Join(dir, d))
		wantNames := []string{"example.com/app:" + layout.CosignTag(img, ".sig"), "example.com/app:v1", "", ""}
		if !slices.Equal(names, wantNames) {
			t.Errorf("%s: names %q, want %q", d, names, wantNames)
		}
	}
	if got := layoutNames(t, filepath.Join(dir, "dst2")); !slices.Equal(got, []string{"sha256-" + img.Encoded() + ".sig", "v2", "", ""}) {
		t.Errorf("dst2 (the image under a bare tag): %q", got)
	}

	// Without Referrers: the image alone.
	if _, err := copyNames(t, ctx, "oci:"+src+":example.com/app:v1", "oci:"+filepath.Join(dir, "plain"), CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := layoutNames(t, filepath.Join(dir, "plain")); !slices.Equal(got, []string{"example.com/app:v1"}) {
		t.Errorf("a copy without referrers holds %q", got)
	}
	// A conversion cannot carry referrers.
	o.Convert = func(ctx context.Context, l *layout.Layout, d ocispec.Descriptor) (ocispec.Descriptor, error) {
		return d, nil
	}
	if _, err := copyNames(t, ctx, "oci:"+src+":example.com/app:v1", "oci:"+filepath.Join(dir, "conv"), o); !errors.Is(err, ErrReferrersConvert) {
		t.Errorf("copy with referrers and a conversion: %v", err)
	}
}

// With --all and Referrers, a layout's untagged referrers and cosign
// entries travel as referrers of their images, not as images.
func TestCopyAllWithReferrers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img, want := signedImage(t, src, "example.com/app:v1")
	slices.Sort(want)
	o := CopyOptions{Options: Options{All: true, Referrers: true}}
	o.Copy.AllPlatforms = true
	imgs, err := copyNames(t, ctx, "oci:"+src, "oci-archive:"+filepath.Join(dir, "all.tar"), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Descriptor.Digest != img {
		t.Fatalf("copied %+v", imgs)
	}
	if _, err := copyNames(t, ctx, "oci-archive:"+filepath.Join(dir, "all.tar"), "oci:"+filepath.Join(dir, "dst"), o); err != nil {
		t.Fatal(err)
	}
	if got := referrersIn(t, filepath.Join(dir, "dst"), img); !slices.Equal(got, want) {
		t.Errorf("referrers %v, want %v", got, want)
	}
}

// Without Referrers, --all and an archive read leave untagged referrers
// behind: they are no images of their own. cosign's named entries are
// names like any other.
func TestCopyAllWithoutReferrers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img, _ := signedImage(t, src, "example.com/app:v1")
	all := CopyOptions{Options: Options{All: true}}
	all.Copy.AllPlatforms = true
	if _, err := copyNames(t, ctx, "oci:"+src, "oci:"+filepath.Join(dir, "dst"), all); err != nil {
		t.Fatal(err)
	}
	want := []string{"example.com/app:" + layout.CosignTag(img, ".sig"), "example.com/app:v1"}
	if got := layoutNames(t, filepath.Join(dir, "dst")); !slices.Equal(got, want) {
		t.Errorf("copy --all: %q, want %q", got, want)
	}
	with := CopyOptions{Options: Options{Referrers: true}}
	if _, err := copyNames(t, ctx, "oci:"+src+":example.com/app:v1", "oci-archive:"+filepath.Join(dir, "a.tar"), with); err != nil {
		t.Fatal(err)
	}
	if _, err := copyNames(t, ctx, "oci-archive:"+filepath.Join(dir, "a.tar"), "oci:"+filepath.Join(dir, "loaded"), CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := layoutNames(t, filepath.Join(dir, "loaded")); !slices.Equal(got, want) {
		t.Errorf("load without referrers: %q, want %q", got, want)
	}
}

// An image copied by digest into a layout stays untagged there, and its
// referrers are recorded beside it (so gc keeps them): an untagged
// referrer, and cosign's signature under its bare tag.
func TestCopyUntaggedWithReferrers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img, want := signedImage(t, src, "example.com/app:v1")
	slices.Sort(want)
	o := CopyOptions{Options: Options{Referrers: true}}
	dst := filepath.Join(dir, "dst")
	if _, err := copyNames(t, ctx, "oci:"+src+":@"+img.String(), "oci:"+dst, o); err != nil {
		t.Fatal(err)
	}
	if got := referrersIn(t, dst, img); !slices.Equal(got, want) {
		t.Errorf("referrers %v, want %v", got, want)
	}
	l, err := layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if got := referrersIn(t, dst, img); !slices.Equal(got, want) {
		t.Errorf("after gc: referrers %v, want %v", got, want)
	}
}
