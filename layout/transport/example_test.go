package transport_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/transport"
)

// Copy moves images between places named as skopeo names them: here from
// a layout into a docker-archive (what docker load reads), and from that
// archive into another layout. Cancelling ctx (Ctrl-C) stops a copy and
// leaves the destination as it was.
func ExampleCopy() {
	dir, err := os.MkdirTemp("", "transport-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// An image to copy: a one-layer import, named v1.
	l, err := layout.Init(filepath.Join(dir, "images"))
	if err != nil {
		log.Fatal(err)
	}
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o644, Size: 6})
	_, _ = tw.Write([]byte("hello\n"))
	_ = tw.Close()
	if _, err := l.Import(ctx, &rootfs, layout.ImportOptions{Ref: "v1"}); err != nil {
		log.Fatal(err)
	}
	l.Close()

	copyImages := func(from, to string) []transport.Image {
		src, err := transport.ParseSource(from)
		if err != nil {
			log.Fatal(err)
		}
		dst, err := transport.ParseDestination(to)
		if err != nil {
			log.Fatal(err)
		}
		imgs, err := transport.Copy(ctx, src, dst, transport.CopyOptions{})
		if err != nil {
			log.Fatal(err)
		}
		return imgs
	}
	archive := filepath.Join(dir, "app.tar")
	saved := copyImages("oci:"+filepath.Join(dir, "images")+":v1", "docker-archive:"+archive+":example.com/app:1")
	fmt.Println("saved as", saved[0].Names)
	loaded := copyImages("docker-archive:"+archive, "oci:"+filepath.Join(dir, "other"))
	fmt.Println("loaded as", loaded[0].Names, loaded[0].Descriptor.Digest == saved[0].Descriptor.Digest)
	// Output:
	// saved as [example.com/app:1]
	// loaded as [example.com/app:1] true
}
