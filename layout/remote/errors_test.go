package remote

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

func TestExplain(t *testing.T) {
	u, _ := url.Parse("https://r.example/v2/a/manifests/v1")
	resp := func(code int) error {
		return &errcode.ErrorResponse{Method: http.MethodGet, URL: u, StatusCode: code}
	}
	// unauthorized: the typed error, with whether credentials were refused.
	type unauthorized struct{ refused bool }
	tests := []struct {
		name  string
		err   error
		want  error
		text  string
		typed *unauthorized
	}{
		{"no credentials", fmt.Errorf("x: %w", auth.ErrBasicCredentialNotFound), ErrUnauthorized, "registry r.example needs credentials", &unauthorized{false}},
		{"refused", resp(http.StatusUnauthorized), ErrUnauthorized, "refused", &unauthorized{true}},
		{"forbidden", resp(http.StatusForbidden), ErrDenied, "", nil},
		{"missing", resp(http.StatusNotFound), ErrNotFound, "", nil},
		{"missing tag", fmt.Errorf("v1: %w", errdef.ErrNotFound), ErrNotFound, "", nil},
		{"copy wrapper", &oras.CopyError{Op: "Push", Origin: oras.CopyErrorOriginDestination, Err: resp(http.StatusUnauthorized)}, ErrUnauthorized, "", &unauthorized{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := explain(tt.err, "r.example")
			if !errors.Is(got, tt.want) {
				t.Fatalf("explain = %v, want %v", got, tt.want)
			}
			if !strings.Contains(got.Error(), tt.text) {
				t.Fatalf("explain = %v, want %q in it", got, tt.text)
			}
			var ue *UnauthorizedError
			if errors.As(got, &ue) != (tt.typed != nil) || ue != nil && (ue.Refused != tt.typed.refused || ue.Registry != "r.example") {
				t.Fatalf("explain = %#v, want an UnauthorizedError %v", got, tt.typed)
			}
			// Advice on flags and commands is the CLI's (cmd/strata/hints.go).
			if strings.Contains(got.Error(), "strata") {
				t.Fatalf("explain = %v: a library error gives CLI advice", got)
			}
			if strings.Contains(got.Error(), "failed to perform") {
				t.Fatalf("oras-go's wrapper text kept: %v", got)
			}
		})
	}
	other := errors.New("other")
	if explain(other, "r") != other || explain(nil, "r") != nil {
		t.Fatal("explain changed an unrelated error")
	}
}

func TestMountCandidates(t *testing.T) {
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	desc, err := l.PutJSON(ocispec.MediaTypeImageIndex, ocispec.Index{Manifests: []ocispec.Descriptor{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(desc, "short", "r.example/team/base:v1", "other.example/x/y:v1", "r.example/team/app:v1"); err != nil {
		t.Fatal(err)
	}
	withImageName := desc
	withImageName.Annotations = map[string]string{layout.AnnotationImageName: "r.example/origin/img:3"}
	if err := l.Tag(withImageName, "local"); err != nil {
		t.Fatal(err)
	}
	dst, _ := ParseReference("r.example/team/app:v2")
	got := mountCandidates(l, desc.Digest, dst, []string{"r.example/extra/one", "extra/two", "team/app"})
	want := []string{"extra/one", "extra/two", "team/base", "origin/img"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("mountCandidates = %v, want %v", got, want)
	}
}

func FuzzNormalizeRegistry(f *testing.F) {
	for _, s := range []string{"localhost:5000", "https://index.docker.io/v1/", "docker://a/b", "", "http://"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := normalizeRegistry(s)
		if err != nil {
			return
		}
		if h == "" || strings.Contains(h, "/") {
			t.Fatalf("normalizeRegistry(%q) = %q", s, h)
		}
		if again, err := normalizeRegistry(h); err != nil || again != h {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", s, h, again, err)
		}
	})
}

// A multi-platform image whose other platforms the layout lacks is
// refused before any request, with ErrPartialIndex: push one platform.
func TestPushPartialIndex(t *testing.T) {
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	amd, _ := layout.ParsePlatform("linux/amd64")
	md, err := l.PutImage(layout.NewConfig(amd), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	md.Platform = &amd
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not here"), Size: 8,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}}
	idx, err := l.PutJSON(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md, missing}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(idx, "multi"); err != nil {
		t.Fatal(err)
	}
	_, err = Push(context.Background(), l, "multi", "127.0.0.1:1/a/b:v1")
	if !errors.Is(err, ErrPartialIndex) || strings.Contains(err.Error(), "--") {
		t.Fatalf("Push = %v, want ErrPartialIndex and no flag", err)
	}
	if _, err := Push(context.Background(), l, "multi", "127.0.0.1:1/a/b:v1", WithPlatform(amd)); errors.Is(err, ErrPartialIndex) {
		t.Fatalf("Push of the platform held = %v", err)
	}
}
