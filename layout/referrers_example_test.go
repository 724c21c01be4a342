package layout_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-oci/strata/layout"
)

// Attach stores an SBOM that refers to an image, ReferrerIndex finds it,
// and a copy with CopyOptions.Referrers takes it along; Record names the
// image and records its referrers in one update, as a pull does.
func ExampleLayout_Attach() {
	dir, err := os.MkdirTemp("", "referrers-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	src, err := layout.Init(filepath.Join(dir, "src"))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Import(ctx, rootfsTar(), layout.ImportOptions{Ref: "v1"}); err != nil {
		log.Fatal(err)
	}
	img, err := src.Resolve("v1")
	if err != nil {
		log.Fatal(err)
	}
	sbom := layout.ArtifactFile{Name: "sbom.spdx.json", Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(`{"spdxVersion":"SPDX-2.3"}`)), nil
	}}
	if _, err := src.Attach(ctx, img, layout.AttachOptions{ArtifactType: "application/spdx+json", Files: []layout.ArtifactFile{sbom}}); err != nil {
		log.Fatal(err)
	}
	refs, err := src.Referrers(ctx, img.Digest, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(refs), "referrer:", refs[0].Descriptor.ArtifactType)

	dst, err := layout.Init(filepath.Join(dir, "dst"))
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close()
	set := &layout.ReferrerSet{}
	d, err := layout.CopyImage(ctx, dst, src, img, layout.CopyOptions{Referrers: set})
	if err != nil {
		log.Fatal(err)
	}
	if err := dst.Record(d, []string{"example.com/app:v1"}, set.Take()); err != nil {
		log.Fatal(err)
	}
	ents, _ := dst.List()
	for _, e := range ents {
		fmt.Println(e.Name == "", e.Subject == img.Digest)
	}
	// Output:
	// 1 referrer: application/spdx+json
	// false false
	// true true
}

// CreateIndex makes a multi-platform image of single-platform ones, each
// listed with the platform its config names.
func ExampleLayout_CreateIndex() {
	dir, err := os.MkdirTemp("", "index-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := layout.Init(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	var srcs []layout.IndexSource
	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		plat, _ := layout.ParsePlatform(p)
		res, err := l.Import(ctx, rootfsTar(), layout.ImportOptions{Platform: plat})
		if err != nil {
			log.Fatal(err)
		}
		srcs = append(srcs, layout.IndexSource{Layout: l, Descriptor: res.Manifest})
	}
	d, err := l.CreateIndex(ctx, "app", srcs, layout.IndexOptions{})
	if err != nil {
		log.Fatal(err)
	}
	ps, _ := l.Platforms(d)
	fmt.Println(d.MediaType, len(ps), ps[1].Architecture)
	// Output:
	// application/vnd.oci.image.index.v1+json 2 arm64
}

// ReferrerIndex answers, from one scan of the layout, which artifacts
// refer to an image (Of) and what travels with it at any depth (Closure):
// here an SBOM and a signature of the SBOM.
func ExampleLayout_ReferrerIndex() {
	dir, err := os.MkdirTemp("", "referrer-index-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	l, err := layout.Init(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	res, err := l.Import(ctx, rootfsTar(), layout.ImportOptions{Ref: "v1"})
	if err != nil {
		log.Fatal(err)
	}
	file := func(name, s string) layout.ArtifactFile {
		return layout.ArtifactFile{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }}
	}
	sbom, err := l.Attach(ctx, res.Manifest, layout.AttachOptions{ArtifactType: "application/spdx+json", Files: []layout.ArtifactFile{file("sbom.spdx.json", `{"spdxVersion":"SPDX-2.3"}`)}})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := l.Attach(ctx, sbom, layout.AttachOptions{ArtifactType: "application/vnd.example.signature", Files: []layout.ArtifactFile{file("sig", "signed")}}); err != nil {
		log.Fatal(err)
	}

	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range ri.Of(res.Manifest.Digest, "") {
		fmt.Println("direct:", r.Descriptor.ArtifactType)
	}
	all, err := ri.Closure(ctx, res.Manifest)
	if err != nil {
		log.Fatal(err)
	}
	for _, r := range all {
		fmt.Println("carried:", r.Descriptor.ArtifactType, r.Subject == res.Manifest.Digest)
	}
	// Output:
	// direct: application/spdx+json
	// carried: application/spdx+json true
	// carried: application/vnd.example.signature false
}
