package layout_test

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
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
)

// rootfsTar is a root filesystem tarball of one file, as `tar -c` makes.
func rootfsTar() *bytes.Reader {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := []byte("hello\n")
	_ = tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)})
	_, _ = tw.Write(body)
	_ = tw.Close()
	return bytes.NewReader(b.Bytes())
}

// Import makes a one-layer image of a rootfs tarball, as docker import
// does, and names it. With a fixed creation time the same tarball gives
// the same image digest every time. Ctrl-C handling is the caller's: a
// cancelled ctx stops the import and names nothing.
func ExampleLayout_Import() {
	dir, err := os.MkdirTemp("", "import-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Init(filepath.Join(dir, "images"))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	res, err := l.Import(context.Background(), rootfsTar(), layout.ImportOptions{
		Platform:  ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		Created:   &created,
		CreatedBy: "example",
		Layer:     []layout.LayerOption{layout.WithCompression(layout.CompressionZstd)},
		Ref:       "v1",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Layer.Input, "input, stored as", res.Layer.Descriptor.MediaType)

	img, err := l.Image("v1", &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Descriptor.Digest == res.Manifest.Digest, img.Config.Created.Format(time.RFC3339), img.Config.RootFS.DiffIDs[0] == res.Layer.DiffID)
	// Output:
	// none input, stored as application/vnd.oci.image.layer.v1.tar+zstd
	// true 2024-01-02T03:04:05Z true
}

// CopyImage moves an image, with every blob it reaches, from one layout
// into another (on one file system by reflink or hard link, each blob
// verified); naming it there is a second step.
func ExampleCopyImage() {
	dir, err := os.MkdirTemp("", "copy-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src, err := layout.Init(filepath.Join(dir, "src"))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	ctx := context.Background()
	if _, err := src.Import(ctx, rootfsTar(), layout.ImportOptions{Ref: "v1"}); err != nil {
		log.Fatal(err)
	}
	dst, err := layout.Init(filepath.Join(dir, "usb"))
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close()

	desc, err := src.Resolve("v1")
	if err != nil {
		log.Fatal(err)
	}
	copied := 0
	d, err := layout.CopyImage(ctx, dst, src, desc, layout.CopyOptions{
		OnBlob: func(ocispec.Descriptor, blob.CopyMethod) { copied++ },
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := dst.Tag(d, "v1", "example.com/app:1"); err != nil {
		log.Fatal(err)
	}
	names, _ := dst.Names("v1")
	all, _ := dst.List()
	fmt.Println(copied, "blobs copied;", len(all), "names;", names[0], "is", d.Digest == desc.Digest)
	// Output:
	// 3 blobs copied; 2 names; v1 is true
}
