package layout_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/strata-oci/strata/layout"
)

// An image is named in index.json, found again by name, and its blobs are
// collected once no name reaches them.
func Example() {
	dir, err := os.MkdirTemp("", "layout-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Init(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// An image with no layers: a config and a manifest.
	p, _ := layout.ParsePlatform("linux/arm64")
	cfg := layout.NewConfig(p)
	if err := cfg.SetRuntime("Cmd", []string{"/bin/true"}); err != nil {
		log.Fatal(err)
	}
	desc, err := l.PutImage(cfg, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Tag(desc, "v1", "example.com/app:1"); err != nil {
		log.Fatal(err)
	}

	img, err := l.Image("example.com/app:1", &p)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(img.Descriptor.Digest == desc.Digest, img.Config.Architecture, img.Config.Config.Cmd)

	if err := l.Untag("v1", "example.com/app:1"); err != nil {
		log.Fatal(err)
	}
	_, err = l.Resolve("v1")
	fmt.Println(errors.Is(err, layout.ErrRefNotFound))
	res, err := l.GC()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(res.Removed), "blobs removed")
	// Output:
	// true arm64 [/bin/true]
	// true
	// 2 blobs removed
}

// Config edits change only the fields they name: fields strata does not
// model survive.
func ExampleParseConfig() {
	raw := []byte(`{"architecture":"amd64","os":"linux","config":{"Healthcheck":{"Test":["CMD","true"]}},"rootfs":{"type":"layers","diff_ids":[]},"moby.future":1}`)
	cfg, err := layout.ParseConfig(raw)
	if err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetRuntime("User", "1000"); err != nil {
		log.Fatal(err)
	}
	out, err := cfg.Bytes()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(out))
	// Output:
	// {"architecture":"amd64","config":{"Healthcheck":{"Test":["CMD","true"]},"User":"1000"},"moby.future":1,"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}
}

// Fsck reports every problem it finds, one per entry.
func ExampleLayout_Fsck() {
	dir, err := os.MkdirTemp("", "layout-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	l, err := layout.Init(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	problems, err := l.Fsck()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(problems), "problems")
	// Output:
	// 0 problems
}
