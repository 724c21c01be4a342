package bundle_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// exampleImage writes a one-layer image tagged v1 into a new layout in
// dir, for the examples.
func exampleImage(dir string) string {
	img := filepath.Join(dir, "img")
	layer := layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/motd", "hello\n", 0o644))
	if err := layertest.BuildImage(img, "v1", layertest.Image{Layers: [][]byte{layer}, Cmd: []string{"/bin/sh"}}); err != nil {
		log.Fatal(err)
	}
	return img
}

// storeOptions says who this process is, decided once by the caller:
// root, or an unprivileged user outside any user namespace.
func storeOptions() snapshot.StoreOptions {
	if os.Geteuid() == 0 {
		return snapshot.StoreOptions{}
	}
	return snapshot.StoreOptions{Rootless: true, UID: os.Geteuid(), GID: os.Getegid()}
}

// Unpack an image into a bundle: DIR/rootfs and DIR/config.json, with
// the image's layers extracted into a snapshot store.
func ExampleUnpack() {
	dir, err := os.MkdirTemp("", "strata-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Open(exampleImage(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	s, err := snapshot.Open(filepath.Join(dir, "store"), storeOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	rec, err := bundle.Unpack(context.Background(), s, l, "v1", filepath.Join(dir, "bundle"), bundle.UnpackOptions{Driver: vfs.Name})
	if err != nil {
		log.Fatal(err)
	}
	motd, err := os.ReadFile(filepath.Join(rec.Dir, snapshot.RootfsDir, "etc", "motd"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s driver, %d layer: %s", rec.Driver, len(rec.Chain), motd)
	// Output: vfs driver, 1 layer: hello
}

// Commit what changed in a bundle as a new layer and image, tagged v2,
// in the layout; the bundle then works on top of v2.
func ExampleCommit() {
	dir, err := os.MkdirTemp("", "strata-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Open(exampleImage(dir))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	s, err := snapshot.Open(filepath.Join(dir, "store"), storeOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	b := filepath.Join(dir, "bundle")
	if _, err := bundle.Unpack(context.Background(), s, l, "v1", b, bundle.UnpackOptions{}); err != nil {
		log.Fatal(err)
	}
	// What a container would do.
	if err := os.WriteFile(filepath.Join(b, snapshot.RootfsDir, "etc", "motd"), []byte("changed\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	res, err := bundle.Commit(context.Background(), b, l, bundle.CommitOptions{
		Ref:          "v2",
		Comment:      "change the motd",
		StoreOptions: storeOptions(),
	})
	if err != nil {
		log.Fatal(err)
	}
	img, err := l.Image("v2", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d entries in the new layer; v2 has %d layers; the bundle is on %s\n", res.Entries, len(img.Manifest.Layers), res.Record.Ref)
	// Output: 2 entries in the new layer; v2 has 2 layers; the bundle is on v2
}
