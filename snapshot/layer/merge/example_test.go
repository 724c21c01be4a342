package merge_test

import (
	"context"
	"io"
	"log"
	"os"

	"github.com/strata-oci/strata/snapshot/layer/merge"
)

// Merge two layer tarballs (compressed or not) into one tar on stdout:
// the file system they make, whiteouts applied.
func ExampleRead() {
	ctx := context.Background()
	var layers []merge.Layer
	for _, f := range []string{"base.tar.gz", "app.tar.zst"} {
		layers = append(layers, merge.Layer{Name: f, Open: func() (io.ReadCloser, error) { return os.Open(f) }})
	}
	tree, err := merge.Read(ctx, layers, merge.Options{})
	if err != nil {
		log.Fatal(err)
	}
	if err := tree.WriteTar(ctx, os.Stdout, merge.WriteOptions{}); err != nil {
		log.Fatal(err)
	}
}
