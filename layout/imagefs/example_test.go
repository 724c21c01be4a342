package imagefs_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/snapshot/layer/merge"
)

// Write the file system of an image, as docker export writes a
// container's, to stdout. Open reads archives too
// ("oci-archive:app.tar", "docker-archive:app.tar:app:v1").
func ExampleExport() {
	ctx := context.Background()
	src, err := imagefs.Open(ctx, "./img:v1", imagefs.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if err := imagefs.Export(ctx, src.Layout, src.Image, os.Stdout, imagefs.ExportOptions{}); err != nil {
		log.Fatal(err)
	}
}

// Flatten every platform of an index into one layer each and name the
// result; a failure takes back what was written.
func ExampleFlatten() {
	ctx := context.Background()
	l, err := layout.Open("./img")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	root, err := l.Resolve("v1")
	if err != nil {
		log.Fatal(err)
	}
	res, err := imagefs.Flatten(ctx, l, root, imagefs.FlattenOptions{Compression: layout.CompressionZstd})
	if err == nil {
		err = l.Tag(res.Root, "v1-flat")
	}
	if err != nil {
		l.Undo()
		log.Fatal(err)
	}
	fmt.Println(res.Root.Digest)
}

// List what differs between two images, as podman diff does.
func ExampleRead() {
	ctx := context.Background()
	var trees []*merge.Tree
	for i, name := range []string{"./img:v1", "./img:v2"} {
		src, err := imagefs.Open(ctx, name, imagefs.OpenOptions{})
		if err != nil {
			log.Fatal(err)
		}
		defer src.Close()
		// The second tree records which layer removed what.
		t, err := imagefs.Read(ctx, src.Layout, src.Image, merge.Options{Removals: i == 1})
		if err != nil {
			log.Fatal(err)
		}
		trees = append(trees, t)
	}
	changes, err := merge.Compare(ctx, trees[0], trees[1])
	if err != nil {
		log.Fatal(err)
	}
	for _, c := range changes {
		fmt.Println(c.Kind, "/"+c.Path, c.Fields)
	}
}
