package layout

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func indexPlatforms(t *testing.T, l *Layout, name string) []string {
	t.Helper()
	d, err := l.Resolve(name)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := l.ReadIndex(d)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		if m.Platform == nil {
			t.Fatalf("entry %s has no platform", m.Digest)
		}
		out = append(out, platforms.Format(*m.Platform))
	}
	return out
}

// A multi-platform image is built from per-platform images, some in
// other layouts, with platforms from their configs; add replaces a
// platform's entry; rm removes by platform or digest.
func TestIndexCreateAddRemove(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	other := initTest(t)
	amd := addImage(t, l, "linux/amd64", "a")
	arm := addImage(t, other, "linux/arm64", "b")
	if err := l.Tag(amd, "amd"); err != nil {
		t.Fatal(err)
	}
	d, err := l.CreateIndex(ctx, "multi", []IndexSource{{Layout: l, Descriptor: amd}, {Layout: other, Descriptor: arm}},
		IndexOptions{Annotations: map[string]string{"org.opencontainers.image.version": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("media type %s", d.MediaType)
	}
	if got := indexPlatforms(t, l, "multi"); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v", got)
	}
	idx, _ := l.ReadIndex(d)
	if idx.Annotations["org.opencontainers.image.version"] != "1" {
		t.Errorf("annotations %v", idx.Annotations)
	}
	mustFsckClean(t, l)
	if err := l.VerifyImage(ctx, d, VerifyOptions{}); err != nil {
		t.Errorf("the index is not whole: %v", err)
	}
	// The name is taken now.
	if _, err := l.CreateIndex(ctx, "multi", []IndexSource{{Descriptor: amd}}, IndexOptions{}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("create over a name: %v", err)
	}

	// A new amd64 build replaces the old one; s390x is added.
	amd2 := addImage(t, l, "linux/amd64", "a2")
	s390 := addImage(t, l, "linux/s390x", "c")
	if _, err := l.AddToIndex(ctx, "multi", []IndexSource{{Descriptor: amd2}, {Descriptor: s390}, {Descriptor: s390}}, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := indexPlatforms(t, l, "multi"); !slices.Equal(got, []string{"linux/amd64", "linux/arm64", "linux/s390x"}) {
		t.Errorf("after add: %v", got)
	}
	md, err := l.SelectManifest(mustResolve(t, l, "multi"), ptr(mustPlatform(t, "linux/amd64")))
	if err != nil || md.Digest != amd2.Digest {
		t.Errorf("amd64 is %s, want the new build %s (%v)", md.Digest, amd2.Digest, err)
	}

	// rm by platform and by digest.
	if _, err := l.RemoveFromIndex(ctx, "multi", []string{"linux/arm64", "@" + s390.Digest.String()}); err != nil {
		t.Fatal(err)
	}
	if got := indexPlatforms(t, l, "multi"); !slices.Equal(got, []string{"linux/amd64"}) {
		t.Errorf("after rm: %v", got)
	}
	before := mustResolve(t, l, "multi")
	if _, err := l.RemoveFromIndex(ctx, "multi", []string{"linux/ppc64le"}); !errors.Is(err, ErrNotInIndex) {
		t.Errorf("rm of an absent platform: %v", err)
	}
	if _, err := l.RemoveFromIndex(ctx, "multi", []string{"not-a-platform/x/y/z"}); err == nil {
		t.Error("rm of garbage succeeded")
	}
	if after := mustResolve(t, l, "multi"); after.Digest != before.Digest {
		t.Error("a failed rm changed the index")
	}
	// add and rm need an index.
	if _, err := l.AddToIndex(ctx, "amd", []IndexSource{{Descriptor: s390}}, IndexOptions{}); !errors.Is(err, ErrNotIndex) {
		t.Errorf("add to a manifest: %v", err)
	}
	if _, err := l.AddToIndex(ctx, "nothing", []IndexSource{{Descriptor: s390}}, IndexOptions{}); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("add to nothing: %v", err)
	}
	mustFsckClean(t, l)
}

// An index among the sources contributes its entries; an artifact is
// refused and nothing is named.
func TestIndexCreateFromIndexAndRefuses(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	amd := addImage(t, l, "linux/amd64", "a")
	arm := addImage(t, l, "linux/arm64", "b")
	ix := addIndex(t, l, ocispec.Descriptor{MediaType: amd.MediaType, Digest: amd.Digest, Size: amd.Size, Platform: ptr(mustPlatform(t, "linux/amd64"))})
	if _, err := l.CreateIndex(ctx, "both", []IndexSource{{Descriptor: ix}, {Descriptor: arm}}, IndexOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := indexPlatforms(t, l, "both"); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("platforms %v", got)
	}
	art := attach(t, l, amd, "application/vnd.example")
	if _, err := l.CreateIndex(ctx, "bad", []IndexSource{{Descriptor: art}}, IndexOptions{}); !errors.Is(err, ErrInvalidImage) {
		t.Errorf("index of an artifact: %v", err)
	}
	if _, err := l.Resolve("bad"); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("a failed create named something: %v", err)
	}
}

func mustResolve(t *testing.T, l *Layout, ref string) ocispec.Descriptor {
	t.Helper()
	d, err := l.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func ptr[T any](v T) *T { return &v }
