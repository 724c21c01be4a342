package layout

import (
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPickManifest(t *testing.T) {
	m := func(name, os, arch, variant, osVersion string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(name), Size: 1,
			Platform: &ocispec.Platform{OS: os, Architecture: arch, Variant: variant, OSVersion: osVersion}}
	}
	amd1, amd2 := m("amd1", "linux", "amd64", "", ""), m("amd2", "linux", "amd64", "", "")
	v6, v7, v7b := m("v6", "linux", "arm", "v6", ""), m("v7", "linux", "arm", "v7", ""), m("v7b", "linux", "arm", "v7", "")
	win1, win2 := m("win1", "windows", "amd64", "", "10.0.17763.1"), m("win2", "windows", "amd64", "", "10.0.20348.1")
	arm64 := m("arm64", "linux", "arm64", "", "")
	for _, tt := range []struct {
		name   string
		want   string
		list   []ocispec.Descriptor
		chosen ocispec.Descriptor
		others []ocispec.Descriptor
	}{
		{"one", "linux/amd64", []ocispec.Descriptor{arm64, amd1}, amd1, nil},
		{"two for one platform", "linux/amd64", []ocispec.Descriptor{amd1, arm64, amd2}, amd1, []ocispec.Descriptor{amd2}},
		{"the same manifest twice", "linux/amd64", []ocispec.Descriptor{amd1, amd1}, amd1, nil},
		{"a fallback variant is no duplicate", "linux/arm/v7", []ocispec.Descriptor{v6, v7}, v7, nil},
		{"two of the best variant", "linux/arm/v7", []ocispec.Descriptor{v6, v7, v7b}, v7, []ocispec.Descriptor{v7b}},
		{"os versions differ", "windows/amd64", []ocispec.Descriptor{win1, win2}, win1, nil},
		{"arm64 is arm64/v8", "linux/arm64/v8", []ocispec.Descriptor{arm64}, arm64, nil},
	} {
		idx := digest.FromString(tt.name)
		got, dup, err := PickManifest(idx, mustPlatform(t, tt.want), tt.list)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got.Digest != tt.chosen.Digest {
			t.Errorf("%s: chose %s, want %s", tt.name, got.Digest, tt.chosen.Digest)
		}
		switch {
		case tt.others == nil && dup != nil:
			t.Errorf("%s: reported %s", tt.name, dup)
		case tt.others != nil && (dup == nil || dup.Index != idx || dup.Chosen.Digest != got.Digest || len(dup.Others) != len(tt.others) || dup.Others[0].Digest != tt.others[0].Digest):
			t.Errorf("%s: duplicates %+v, want others %v", tt.name, dup, tt.others)
		}
	}
	if _, _, err := PickManifest(digest.FromString("x"), mustPlatform(t, "linux/s390x"), []ocispec.Descriptor{amd1}); err == nil {
		t.Error("no match gave no error")
	}
}

// TestSelectManifestChoice: a layout's index with two manifests for one
// platform gives the first, and says so.
func TestSelectManifestChoice(t *testing.T) {
	l := initTest(t)
	a := addImage(t, l, "linux/amd64", "a")
	b := addImage(t, l, "linux/amd64", "b")
	ix := addIndex(t, l, a, b) // platforms left out: read from the configs
	p := mustPlatform(t, "linux/amd64")
	got, dup, err := l.selectManifestChoice(ix, &p)
	if err != nil || got.Digest != a.Digest {
		t.Fatalf("chose %s %v, want %s", got.Digest, err, a.Digest)
	}
	if dup == nil || len(dup.Others) != 1 || dup.Others[0].Digest != b.Digest || dup.Index != ix.Digest {
		t.Fatalf("duplicates %+v", dup)
	}
	if md, err := l.SelectManifest(ix, &p); err != nil || md.Digest != a.Digest {
		t.Fatalf("SelectManifest: %s %v", md.Digest, err)
	}
}
