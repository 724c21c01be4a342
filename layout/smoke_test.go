package layout

import (
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := NewConfig(mustPlatform(t, "linux/amd64"))
	md, err := l.PutImage(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, "v1", "docker.io/library/x:1"); err != nil {
		t.Fatal(err)
	}
	img, err := l.Image("v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Descriptor.Digest != md.Digest {
		t.Fatal("digest")
	}
	ents, err := l.List()
	if err != nil || len(ents) != 2 {
		t.Fatal(ents, err)
	}
	probs, err := l.Fsck()
	if err != nil || len(probs) != 0 {
		t.Fatal(probs, err)
	}
	if err := l.Untag("v1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Untag("docker.io/library/x:1"); err != nil {
		t.Fatal(err)
	}
	res, err := l.GC()
	if err != nil || len(res.Removed) != 2 {
		t.Fatal(res, err)
	}
}

func mustPlatform(t *testing.T, s string) ocispec.Platform {
	p, err := ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
