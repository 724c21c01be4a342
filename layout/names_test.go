package layout

import (
	"errors"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNormalizeName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"ov1", "docker.io/library/ov1:latest"},
		{"ov1:2", "docker.io/library/ov1:2"},
		{"library/ov1", "docker.io/library/ov1:latest"},
		{"docker.io/ov1", "docker.io/library/ov1:latest"},
		{"index.docker.io/library/ov1:latest", "docker.io/library/ov1:latest"},
		{"example.com/x", "example.com/x:latest"},
		{"localhost:5000/a/b:1", "localhost:5000/a/b:1"},
		{"x@sha256:" + strings.Repeat("a", 64), "docker.io/library/x@sha256:" + strings.Repeat("a", 64)},
		{"@sha256:" + strings.Repeat("a", 64), ""},
		{"Upper", ""},
		{"", ""},
	} {
		if got := NormalizeName(tt.in); got != tt.want {
			t.Errorf("NormalizeName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// nameEntries writes index.json entries as other tools and older strata
// versions leave them: name is the ref.name, full the
// io.containerd.image.name.
func nameEntries(t *testing.T, l *Layout, ents []struct {
	name, full string
	desc       ocispec.Descriptor
}) {
	t.Helper()
	err := l.UpdateIndex(func(idx *Index) error {
		for _, e := range ents {
			d := e.desc
			d.Annotations = map[string]string{}
			if e.name != "" {
				d.Annotations[AnnotationRefName] = e.name
			}
			if e.full != "" {
				d.Annotations[AnnotationImageName] = e.full
			}
			idx.Manifests = append(idx.Manifests, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestResolveNames is the resolution order of names as users type them:
// exact first (bare tags only so), then docker's reading, then short names.
func TestResolveNames(t *testing.T) {
	l := initTest(t)
	img := map[string]ocispec.Descriptor{}
	for _, k := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "I"} {
		img[k] = addImage(t, l, "linux/amd64", k)
	}
	nameEntries(t, l, []struct {
		name, full string
		desc       ocispec.Descriptor
	}{
		{"v1", "", img["A"]},                           // skopeo's oci:DIR:v1
		{"docker.io/library/v1:latest", "", img["B"]},  // a loaded image named v1
		{"docker.io/library/ov1:latest", "", img["C"]}, // strata load today
		{"ov2:latest", "", img["D"]},                   // strata load before
		{"localhost/app:latest", "", img["E"]},         // podman's local name
		{"ghcr.io/org/app:latest", "", img["F"]},
		{"quay.io/x/tool:1", "", img["G"]},
		{"", "docker.io/library/ctr:1", img["H"]},                  // containerd: no ref.name
		{"mine", "docker.io/library/busybox:latest", img["I"]},     // pulled as ./L:mine
		{"dup:latest", "", img["A"]},                               // two spellings of one
		{"docker.io/library/dup:latest", "", img["B"]},             // name, two images
		{"ghcr.io/a/same:latest", "", img["C"]},                    // two names of
		{"quay.io/b/same:latest", "", img["C"]},                    // one image
		{"1.0", "", img["D"]},                                      // a tag with a dot
		{"latest", "docker.io/library/something:latest", img["E"]}, // Docker 25's ref.name
	})
	for _, tt := range []struct {
		ref  string
		want string // image key, or "" for an error
		err  error
	}{
		{ref: "v1", want: "A"}, // the bare tag, matched first
		{ref: "docker.io/library/v1:latest", want: "B"},
		{ref: "v1:latest", want: "B"}, // docker's reading; the bare v1 is no candidate
		{ref: "library/v1", want: "B"},
		{ref: "ov1", want: "C"},
		{ref: "ov1:latest", want: "C"},
		{ref: "docker.io/library/ov1:latest", want: "C"},
		{ref: "docker.io/ov1", want: "C"},
		{ref: "ov1:2", err: ErrRefNotFound},
		{ref: "ov2", want: "D"},
		{ref: "docker.io/library/ov2:latest", want: "D"},
		{ref: "localhost/app", want: "E"},
		{ref: "org/app", want: "F"},
		{ref: "app", err: ErrAmbiguous},
		{ref: "app:2", err: ErrRefNotFound},
		{ref: "tool:1", want: "G"},
		{ref: "x/tool:1", want: "G"},
		{ref: "tool", err: ErrRefNotFound},               // tool:latest
		{ref: "example.com/tool:1", err: ErrRefNotFound}, // a registry was named
		{ref: "ctr:1", want: "H"},
		{ref: "docker.io/library/ctr:1", want: "H"},
		{ref: "mine", want: "I"},
		{ref: "busybox", want: "I"},
		{ref: "dup", err: ErrAmbiguous},
		{ref: "dup:latest", want: "A"}, // exact
		{ref: "same", want: "C"},       // two names, one image
		{ref: "1.0", want: "D"},
		{ref: "latest", want: "E"},
		{ref: "something", want: "E"},
		{ref: "V1", err: ErrRefNotFound},
	} {
		d, err := l.Resolve(tt.ref)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q) = %s, %v; want %v", tt.ref, d.Digest, err, tt.err)
			}
			continue
		}
		if err != nil || d.Digest != img[tt.want].Digest {
			t.Errorf("Resolve(%q) = %s, %v; want image %s", tt.ref, d.Digest, err, tt.want)
		}
	}

	// The ambiguity names every candidate.
	_, err := l.Resolve("app")
	var amb *AmbiguousRefError
	if !errors.As(err, &amb) {
		t.Fatalf("Resolve(app): %T %v", err, err)
	}
	var got []string
	for _, c := range amb.Candidates {
		got = append(got, c.Name)
	}
	if want := []string{"ghcr.io/org/app:latest", "localhost/app:latest"}; !slices.Equal(got, want) {
		t.Errorf("candidates %v, want %v", got, want)
	}
	if !strings.Contains(err.Error(), "ghcr.io/org/app:latest") || !strings.Contains(err.Error(), "localhost/app:latest") {
		t.Errorf("message does not list the candidates: %v", err)
	}
}

// TestUntagNames removes names found as Resolve finds them, by ref.name
// alone.
func TestUntagNames(t *testing.T) {
	l := initTest(t)
	a := addImage(t, l, "linux/amd64", "a")
	b := addImage(t, l, "linux/amd64", "b")
	nameEntries(t, l, []struct {
		name, full string
		desc       ocispec.Descriptor
	}{
		{"v1", "", a},
		{"docker.io/library/ov1:latest", "", a},
		{"ov1:latest", "", b},
		{"ghcr.io/a/same:latest", "", a},
		{"quay.io/b/same:latest", "", a},
		{"mine", "docker.io/library/busybox:latest", b},
	})
	var amb *AmbiguousRefError
	if err := l.Untag("same"); !errors.As(err, &amb) || len(amb.Candidates) != 2 {
		t.Fatalf("Untag(same): %v", err)
	}
	if err := l.Untag("busybox"); !errors.Is(err, ErrRefNotFound) {
		t.Fatalf("Untag(busybox) went by the registry name: %v", err)
	}
	// Both spellings of docker.io/library/ov1:latest go.
	if err := l.Untag("ov1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Untag("quay.io/b/same", "mine"); err != nil {
		t.Fatal(err)
	}
	if got, want := names(t, l), []string{"ghcr.io/a/same:latest", "v1"}; !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	if _, err := l.Resolve("same"); err != nil {
		t.Fatal(err)
	}
}
