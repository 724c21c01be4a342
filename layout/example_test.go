package layout_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
	res, err := l.GC(context.Background())
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
	problems, err := l.Fsck(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(problems), "problems")
	// Output:
	// 0 problems
}

// VerifyImage checks an image received from elsewhere; with DiffIDs it
// decompresses each layer and compares it with its config's diff_id,
// which a blob that merely matches its own digest does not prove.
func ExampleLayout_VerifyImage() {
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

	// A layer of an empty tar (two zero blocks), under a config that
	// says it is something else.
	layer, err := l.PutBytes(ocispec.MediaTypeImageLayer, make([]byte, 1024))
	if err != nil {
		log.Fatal(err)
	}
	p, _ := layout.ParsePlatform("linux/amd64")
	cfg := layout.NewConfig(p)
	if err := cfg.AppendLayer(digest.FromString("something else")); err != nil {
		log.Fatal(err)
	}
	desc, err := l.PutImage(cfg, []ocispec.Descriptor{layer}, nil)
	if err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	fmt.Println(l.VerifyImage(ctx, desc, layout.VerifyOptions{}))
	err = l.VerifyImage(ctx, desc, layout.VerifyOptions{DiffIDs: true})
	var le *layout.LayerError
	fmt.Println(errors.Is(err, layout.ErrDiffIDMismatch), errors.As(err, &le) && le.Actual == layer.Digest)
	// Output:
	// <nil>
	// true true
}
