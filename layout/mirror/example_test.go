package mirror_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mirror"
)

// Sync gathers the images of several places into one; run again, it moves
// nothing. Here the sources are a layout and an oci-archive made from it;
// a registry repository is named docker://HOST/REPO (every tag), and a
// registry destination docker://REGISTRY/PREFIX.
func ExampleSync() {
	dir, err := os.MkdirTemp("", "mirror-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	l, err := layout.Init(filepath.Join(dir, "images"))
	if err != nil {
		log.Fatal(err)
	}
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	_ = tw.WriteHeader(&tar.Header{Name: "etc/motd", Mode: 0o644, Size: 6})
	_, _ = tw.Write([]byte("hello\n"))
	_ = tw.Close()
	if _, err := l.Import(ctx, &rootfs, layout.ImportOptions{Ref: "example.com/team/app:v1"}); err != nil {
		log.Fatal(err)
	}
	l.Close()

	archive := "oci-archive:" + filepath.Join(dir, "images.tar")
	if _, err := mirror.Sync(ctx, []mirror.Source{{Ref: filepath.Join(dir, "images")}}, archive, mirror.Options{}); err != nil {
		log.Fatal(err)
	}
	for range 2 {
		sum, err := mirror.Sync(ctx, []mirror.Source{{Ref: archive}}, filepath.Join(dir, "mirror"), mirror.Options{})
		if err != nil {
			log.Fatal(err)
		}
		for _, r := range sum.Images {
			fmt.Println(r.Status, r.Name, r.Blobs, "blob(s)")
		}
	}
	// Output:
	// copied example.com/team/app:v1 3 blob(s)
	// unchanged example.com/team/app:v1 0 blob(s)
}
