package build_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/build"
)

// storeOptions says who this process is, decided once by the caller.
func storeOptions() snapshot.StoreOptions {
	if os.Geteuid() == 0 {
		return snapshot.StoreOptions{}
	}
	return snapshot.StoreOptions{Rootless: true, UID: os.Geteuid(), GID: os.Getegid()}
}

// Build an image from a Containerfile into a layout, reproducibly: the
// same context and timestamp give the same digest on every machine.
func ExampleBuild() {
	dir, err := os.MkdirTemp("", "strata-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := filepath.Join(dir, "context")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		log.Fatal(err)
	}
	containerfile := `FROM scratch
ARG GREETING=hello
COPY motd /etc/motd
ENV GREETING=$GREETING
CMD ["/bin/sh"]
`
	if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctx, "motd"), []byte("built by strata\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	s, err := snapshot.Open(filepath.Join(dir, "store"), storeOptions())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	when := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	greeting := "hi"
	res, err := build.Build(context.Background(), build.Options{
		Context:   ctx,
		Store:     s,
		BuildArgs: map[string]*string{"GREETING": &greeting},
		Timestamp: &when,
		Tags:      []string{filepath.Join(dir, "img") + ":v1"},
	})
	if err != nil {
		log.Fatal(err)
	}
	l, err := layout.Open(filepath.Join(dir, "img"))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	img, err := l.Image("v1", nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Descriptor.Digest == res.Manifest.Digest, len(img.Manifest.Layers), img.Config.Config.Env, len(img.Config.History))
	// Output: true 1 [PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin GREETING=hi] 4
}
