package transport

import (
	"errors"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParse(t *testing.T) {
	cases := []struct {
		in        string
		src, dst  string // String() of the parsed source and destination; "" for an error
		dstNames  int
		unknownTr bool
	}{
		{in: "oci:/a/b:v1", src: "oci:/a/b:v1", dst: "oci:/a/b", dstNames: 1},
		{in: "oci:/a/b", src: "oci:/a/b", dst: "oci:/a/b"},
		{in: "/a/b:v1", src: "oci:/a/b:v1", dst: "oci:/a/b", dstNames: 1},
		{in: "oci:/a:x:1,x:latest", src: "", dst: "oci:/a", dstNames: 2},
		{in: "oci:/a:@sha256:" + digest.FromString("x").Encoded(), src: "oci:/a:@sha256:" + digest.FromString("x").Encoded(), dst: ""},
		{in: "oci-archive:/t.tar", src: "oci-archive:/t.tar", dst: "oci-archive:/t.tar"},
		{in: "oci-archive:/t.tar:v1", src: "oci-archive:/t.tar:v1", dst: "oci-archive:/t.tar:v1", dstNames: 1},
		{in: "docker-archive:/t.tar:busybox:1", src: "docker-archive:/t.tar:busybox:1", dst: "docker-archive:/t.tar:busybox:1", dstNames: 1},
		{in: "docker-archive:-", src: "docker-archive:-", dst: "docker-archive:-"},
		{in: "docker-archive:/t.tar:a:1,b:2", src: "", dst: "docker-archive:/t.tar:a:1,b:2", dstNames: 2},
		{in: "docker-archive:/t.tar:Bad", src: "", dst: ""},
		{in: "docker-archive:", src: "", dst: ""},
		{in: "oci:", src: "", dst: ""},
		{in: "oci:/a:,", src: "", dst: ""},
		{in: "docker-archive:/t.tar:@1", src: "docker-archive:/t.tar:@1", dst: ""},
		{in: "oci-archive:/t.tar:@" + digest.FromString("x").String(), src: "oci-archive:/t.tar:@" + digest.FromString("x").String(), dst: ""},
		{in: "docker-archive:/t.tar:@x", src: "", dst: ""},
		{in: "bogus-archive:/x", unknownTr: true},
	}
	for _, c := range cases {
		s, err := ParseSource(c.in)
		if c.unknownTr {
			if !errors.Is(err, ErrUnknownTransport) {
				t.Errorf("ParseSource(%q): %v, want ErrUnknownTransport", c.in, err)
			}
			continue
		}
		switch {
		case c.src == "" && err == nil:
			t.Errorf("ParseSource(%q) = %s, want an error", c.in, s)
		case c.src != "" && (err != nil || s.String() != c.src):
			t.Errorf("ParseSource(%q) = %v, %v; want %s", c.in, s, err, c.src)
		}
		d, err := ParseDestination(c.in)
		switch {
		case c.dst == "" && err == nil:
			t.Errorf("ParseDestination(%q) = %s, want an error", c.in, d)
		case c.dst != "" && (err != nil || d.String() != c.dst || len(d.Names()) != c.dstNames):
			t.Errorf("ParseDestination(%q) = %v, %v; want %s with %d names", c.in, d, err, c.dst, c.dstNames)
		}
	}
}

func TestCanonical(t *testing.T) {
	d := ocispec.Descriptor{Digest: digest.FromString("m")}
	cases := map[string]string{
		"example.com/a:1":        "example.com/a@" + d.Digest.String(),
		"example.com:5000/a":     "example.com:5000/a@" + d.Digest.String(),
		"example.com:5000/a:2":   "example.com:5000/a@" + d.Digest.String(),
		"a@" + d.Digest.String(): "",
	}
	for in, want := range cases {
		if got := canonical(in, d); got != want {
			t.Errorf("canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"oci:/a:b", "docker-archive:x:y:z", "oci-archive:-", "x:y", ":", "oci:a:b,,c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if src, err := ParseSource(s); err == nil && src.String() == "" {
			t.Fatalf("source %q has no name", s)
		}
		if dst, err := ParseDestination(s); err == nil {
			for _, n := range dst.Names() {
				if n == "" {
					t.Fatalf("destination %q has an empty name", s)
				}
			}
		}
	})
}

// TestArchiveNames: archives name an image by its full name rather than a
// bare tag, and a renamed image keeps its source's name as FullName.
func TestArchiveNames(t *testing.T) {
	for _, c := range []struct {
		img  Image
		want []string
	}{
		{Image{Names: []string{"v1"}}, []string{"v1"}},
		{Image{Names: []string{"v1"}, FullName: "docker.io/library/ov1:latest"}, []string{"docker.io/library/ov1:latest"}},
		{Image{Names: []string{"v1", "example.com/x:1"}, FullName: "docker.io/library/ov1:latest"}, []string{"docker.io/library/ov1:latest", "example.com/x:1"}},
		{Image{Names: []string{"v1", "v2"}, FullName: "docker.io/library/ov1:latest"}, []string{"docker.io/library/ov1:latest"}},
		{Image{}, nil},
	} {
		if got := preferFull(c.img); !slices.Equal(got, c.want) {
			t.Errorf("preferFull(%+v) = %v, want %v", c.img, got, c.want)
		}
	}
	img := Image{Names: []string{"v1", "docker.io/library/ov1:latest"}}
	rename(&img, []string{"mine"})
	if !slices.Equal(img.Names, []string{"mine"}) || img.FullName != "docker.io/library/ov1:latest" {
		t.Errorf("rename: %+v", img)
	}
	img = Image{Names: []string{"example.com/x:1"}}
	rename(&img, []string{"example.com/x:1", "y"})
	if img.FullName != "" {
		t.Errorf("rename kept a FullName that is one of the new names: %+v", img)
	}
}
