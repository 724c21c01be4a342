package mirror

import (
	"errors"
	"strings"
	"testing"
)

func TestDestName(t *testing.T) {
	reg := destination{kind: toRegistry, registry: "mirror.local:5000", prefix: "team"}
	bare := destination{kind: toRegistry, registry: "mirror.local"}
	cases := []struct {
		name   string
		d      destination
		scoped bool
		want   string
	}{
		{"docker.io/library/busybox:1", reg, false, "mirror.local:5000/team/busybox:1"},
		{"docker.io/library/busybox:1", reg, true, "mirror.local:5000/team/docker.io/library/busybox:1"},
		{"registry.example:5000/a/b/app:v2", bare, false, "mirror.local/app:v2"},
		{"registry.example:5000/a/b/app:v2", bare, true, "mirror.local/registry.example_5000/a/b/app:v2"},
		{"ghcr.io/x/y", bare, false, "mirror.local/y:latest"},
		{"v1", reg, false, "mirror.local:5000/team/my-images:v1"}, // a bare tag: the layout's directory
	}
	for _, c := range cases {
		got, err := destName(c.name, "/srv/My Images/", c.d, c.scoped)
		if err != nil || got != c.want {
			t.Errorf("destName(%q, scoped %v) = %q, %v; want %q", c.name, c.scoped, got, err, c.want)
		}
	}
}

func TestParseDest(t *testing.T) {
	for in, want := range map[string]destKind{
		"docker://reg:5000":           toRegistry,
		"docker://reg/prefix/deeper/": toRegistry,
		"oci-archive:/x/a.tar":        toArchive,
		"docker-archive:a.tar":        toArchive,
		"oci:/srv/images":             toLayout,
		"/srv/images":                 toLayout,
	} {
		d, err := parseDest(in)
		if err != nil || d.kind != want {
			t.Errorf("parseDest(%q) = %+v, %v", in, d, err)
		}
	}
	for _, in := range []string{"docker://", "docker://reg/app:v1", "oci-archive:", "oci-archive:-", "oci:/srv/images:name", ""} {
		if _, err := parseDest(in); !errors.Is(err, ErrInvalidSource) {
			t.Errorf("parseDest(%q) accepted", in)
		}
	}
}

func TestReadList(t *testing.T) {
	list := `
registry.example.com:
  images:
    busybox: []
    redis: ["1.0", "sha256:0000000000000000000000000000000011111111111111111111111111111111"]
  images-by-tag-regex:
    nginx: ^1\.13\.[12]-alpine-perl$
  images-by-semver:
    alpine: ">= 3.12.0, < 4"
  credentials: {username: john, password: secret}
  tls-verify: false
  platforms: [linux/arm64]
quay.io:
  images:
    coreos/etcd: [latest]
`
	srcs, err := ReadList(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, s := range srcs {
		refs = append(refs, s.Ref)
	}
	want := "docker://quay.io/coreos/etcd docker://registry.example.com/busybox docker://registry.example.com/redis docker://registry.example.com/nginx docker://registry.example.com/alpine"
	if strings.Join(refs, " ") != want {
		t.Fatalf("sources %v", refs)
	}
	redis, nginx, alpine := srcs[2], srcs[3], srcs[4]
	if len(redis.List) != 2 || len(redis.Platforms) != 1 || len(redis.Registry) != 2 || srcs[0].Registry != nil {
		t.Fatalf("redis: %+v", redis)
	}
	if !nginx.Tags.MatchString("1.13.2-alpine-perl") || nginx.Tags.MatchString("1.13.3-alpine-perl") {
		t.Fatal("images-by-tag-regex")
	}
	for tag, ok := range map[string]bool{"3.12.0": true, "v3.19": true, "3.11.9": false, "4.0.0": false, "latest": false} {
		if alpine.Match(tag) != ok {
			t.Errorf("images-by-semver matches %s: %v", tag, !ok)
		}
	}
	for _, bad := range []string{
		"reg:\n  imagez: {}\n",
		"reg:\n  images:\n    app:v1: []\n",
		"reg:\n  images-by-tag-regex:\n    app: '('\n",
		"reg:\n  images-by-semver:\n    app: 'not a range'\n",
		"reg:\n  platforms: [nonsense/x/y/z]\n  images: {app: []}\n",
		"",
		"[1, 2]",
	} {
		if _, err := ReadList(strings.NewReader(bad)); !errors.Is(err, ErrInvalidList) {
			t.Errorf("ReadList(%q) = %v", bad, err)
		}
	}
}

func FuzzReadList(f *testing.F) {
	f.Add("reg:\n  images:\n    app: [v1]\n")
	f.Add("reg:\n  images-by-tag-regex: {app: '.*'}\n  tls-verify: true\n")
	f.Fuzz(func(t *testing.T, s string) {
		srcs, err := ReadList(strings.NewReader(s))
		if err == nil && len(srcs) == 0 {
			t.Fatal("a list of no source accepted")
		}
	})
}
