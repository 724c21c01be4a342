package mutate_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
)

// A config edit and an added layer, each stored as a new image, the name
// moved to the result once it is whole; the first image's layer blob is
// shared, untouched.
func Example() {
	dir, err := os.MkdirTemp("", "mutate-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Init(filepath.Join(dir, "img"))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	// An image of one layer, named v1.
	base, err := l.PutLayer(ctx, bytes.NewReader(tarOf("etc/hostname", "example\n")))
	if err != nil {
		log.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(base.DiffID); err != nil {
		log.Fatal(err)
	}
	v1, err := l.PutImage(cfg, []ocispec.Descriptor{base.Descriptor}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Tag(v1, "v1"); err != nil {
		log.Fatal(err)
	}

	// Its config changed: every platform of an index would be.
	res, err := mutate.Mutate(ctx, l, v1, mutate.Changes{
		Labels: []mutate.Setting{{Key: "org.opencontainers.image.version", Value: "1.1"}},
		Cmd:    &[]string{"/bin/sh"},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	// A layer added from a tarball, with a history entry.
	tarball := filepath.Join(dir, "motd.tar")
	if err := os.WriteFile(tarball, tarOf("etc/motd", "hello\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	when := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	app, err := mutate.Append(ctx, l, res.Root, []mutate.Source{{Path: tarball, CreatedBy: "ADD motd.tar /"}}, mutate.AppendOptions{Created: &when})
	if err != nil {
		log.Fatal(err)
	}
	// Named last: until here index.json is as it was.
	if err := l.Tag(app.Root, "v1"); err != nil {
		log.Fatal(err)
	}

	img, err := l.Image("v1", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Config.Config.Labels["org.opencontainers.image.version"], img.Config.Config.Cmd)
	fmt.Println(len(img.Manifest.Layers), "layers; the first unchanged:", img.Manifest.Layers[0].Digest == base.Descriptor.Digest)
	fmt.Println(img.Config.History[len(img.Config.History)-1].CreatedBy)
	// Output:
	// 1.1 [/bin/sh]
	// 2 layers; the first unchanged: true
	// ADD motd.tar /
}

// tarOf is a tar of one file.
func tarOf(name, body string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	_, _ = tw.Write([]byte(body))
	_ = tw.Close()
	return b.Bytes()
}
