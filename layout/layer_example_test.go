package layout_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// A layer tar becomes a compressed layer blob and, with a config, an
// image.
func ExampleLayout_PutLayer() {
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Init(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	body := []byte("hello\n")
	_ = tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body))})
	_, _ = tw.Write(body)
	_ = tw.Close()

	ly, err := l.PutLayer(context.Background(), &tarball, layout.WithCompression(layout.CompressionZstd), layout.WithTarCheck())
	if err != nil {
		log.Fatal(err)
	}
	p, _ := layout.ParsePlatform("linux/amd64")
	cfg := layout.NewConfig(p)
	if err := cfg.AppendLayer(ly.DiffID); err != nil {
		log.Fatal(err)
	}
	desc, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Tag(desc, "v1"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(ly.Descriptor.MediaType)
	fmt.Println(ly.UncompressedSize)
	// Output:
	// application/vnd.oci.image.layer.v1.tar+zstd
	// 2048
}
