package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// busyboxTar is a layer holding the static busybox of the busybox-static
// package as /bin/busybox and /bin/sh, plus a file that tells images apart.
func busyboxTar(t testing.TB, marker string) []byte {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required (/bin/busybox): %v", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body []byte) {
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Typeflag: tar.TypeDir, Name: "bin/", Mode: 0o755}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755}, bb)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox", Mode: 0o777}); err != nil {
		t.Fatal(err)
	}
	add(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}, nil)
	add(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/marker", Mode: 0o644}, []byte(marker+"\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage is an image built by makeImage.
type testImage struct {
	Desc   ocispec.Descriptor
	DiffID digest.Digest
}

// makeImage builds a one-layer busybox image for platform p in the layout
// at dir (created if needed) and names it with names. The layer is gzip
// unless comp says otherwise.
func makeImage(t testing.TB, dir, marker, p string, comp layout.Compression, names ...string) testImage {
	t.Helper()
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if comp == "" {
		comp = layout.CompressionGzip
	}
	ly, err := l.PutLayer(context.Background(), bytes.NewReader(busyboxTar(t, marker)), layout.WithCompression(comp))
	if err != nil {
		t.Fatal(err)
	}
	plat, err := layout.ParsePlatform(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(plat)
	if err := cfg.AppendLayer(ly.DiffID); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetRuntime("Cmd", []string{"/bin/busybox", "cat", "/etc/marker"}); err != nil {
		t.Fatal(err)
	}
	if err := cfg.AppendHistory(ocispec.History{CreatedBy: "strata test " + marker}); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) > 0 {
		if err := l.Tag(md, names...); err != nil {
			t.Fatal(err)
		}
	}
	return testImage{Desc: md, DiffID: ly.DiffID}
}

// makeIndex builds an index of two platforms' images in dir, named name.
func makeIndex(t testing.TB, dir, name string) (ocispec.Descriptor, []testImage) {
	t.Helper()
	a := makeImage(t, dir, "amd64", "linux/amd64", "")
	b := makeImage(t, dir, "arm64", "linux/arm64/v8", "")
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{a.Desc, b.Desc},
	}
	d, err := l.PutJSON(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(d, name); err != nil {
		t.Fatal(err)
	}
	return d, []testImage{a, b}
}

// resolve returns the descriptor ref names in the layout at dir.
func resolve(t testing.TB, dir, ref string) ocispec.Descriptor {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// names lists the ref.names of a layout, sorted.
func names(t testing.TB, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		if n := m.Annotations[ocispec.AnnotationRefName]; n != "" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// fsckClean fails the test unless strata fsck finds the layout sound.
func fsckClean(t testing.TB, dir string) {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	probs, err := l.Fsck(context.Background())
	if err != nil || len(probs) > 0 {
		t.Fatalf("fsck %s: %v %v", dir, probs, err)
	}
}

// transportRef names a place of the given transport inside dir.
func transportRef(kind, dir, name string) string {
	switch kind {
	case "oci":
		return "oci:" + filepath.Join(dir, "layout") + ":" + name
	case "oci-archive":
		return "oci-archive:" + filepath.Join(dir, "img.tar") + ":" + name
	case "docker-archive":
		return "docker-archive:" + filepath.Join(dir, "img.tar") + ":" + name
	}
	panic(kind)
}

// TestCopyRoundTrip copies an image over every pair of transports and back
// into a layout: with no conversion asked for, the manifest digest and the
// name survive.
func TestCopyRoundTrip(t *testing.T) {
	base := t.TempDir()
	img := makeImage(t, base, "round", "linux/amd64", "", "example.com/app:1")
	kinds := []string{"oci", "oci-archive", "docker-archive"}
	for _, from := range kinds {
		for _, to := range kinds {
			t.Run(from+"-to-"+to, func(t *testing.T) {
				d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
				src := transportRef(from, d1, "example.com/app:1")
				dst := transportRef(to, d2, "example.com/app:1")
				strata(t, "copy", "oci:"+base+":example.com/app:1", src)
				strata(t, "copy", src, dst)
				strata(t, "copy", dst, "oci:"+d3)
				got := resolve(t, d3, "example.com/app:1")
				if got.Digest != img.Desc.Digest {
					t.Fatalf("manifest digest %s, want %s", got.Digest, img.Desc.Digest)
				}
				fsckClean(t, d3)
			})
		}
	}
}

// TestCopyLayoutIncremental copies a whole layout with --all, then again
// after adding an image: blobs are hardlinked (one filesystem), only
// missing ones are transferred, names are kept.
func TestCopyLayoutIncremental(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "dst")
	a := makeImage(t, src, "a", "linux/amd64", "", "a", "docker.io/library/a:1")
	makeIndex(t, src, "multi")
	strata(t, "copy", "--all", "oci:"+src, "oci:"+dst)
	if got, want := names(t, dst), []string{"a", "docker.io/library/a:1", "multi"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("names %v, want %v", got, want)
	}
	fsckClean(t, dst)
	// The index is copied whole: both platforms are there.
	if d := resolve(t, dst, "multi"); d.MediaType != ocispec.MediaTypeImageIndex {
		t.Fatalf("multi is %s", d.MediaType)
	}
	// One filesystem: the layer is the same inode.
	layerPath := func(dir string) string {
		l, err := layout.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		img, err := l.ReadImage(a.Desc)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := l.Blobs().Path(img.Manifest.Layers[0].Digest)
		return p
	}
	var s1, s2 syscall.Stat_t
	if err := syscall.Stat(layerPath(src), &s1); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(layerPath(dst), &s2); err != nil {
		t.Fatal(err)
	}
	if s1.Ino != s2.Ino {
		t.Logf("layer not hardlinked (reflink or copy): inodes %d and %d", s1.Ino, s2.Ino)
	}
	// A second sync transfers nothing new.
	makeImage(t, src, "b", "linux/amd64", "", "b")
	r := runCmd(t, nil, strataBin, "--debug", "copy", "--all", "oci:"+src, "oci:"+dst)
	if r.Code != 0 {
		t.Fatalf("copy: %s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, ": existed") {
		t.Fatalf("second copy reused no blob:\n%s", r.Stderr)
	}
	if got := names(t, dst); len(got) != 4 {
		t.Fatalf("names %v", got)
	}
	fsckClean(t, dst)
}

// TestCopyPlatforms selects platforms out of an index.
func TestCopyPlatforms(t *testing.T) {
	src := t.TempDir()
	idx, imgs := makeIndex(t, src, "multi")
	cases := []struct {
		name  string
		flags []string
		want  func(d ocispec.Descriptor) error
	}{
		{"one platform", []string{"--platform", "linux/arm64"}, func(d ocispec.Descriptor) error {
			if d.Digest != imgs[1].Desc.Digest {
				return fmt.Errorf("got %s, want the arm64 manifest %s", d.Digest, imgs[1].Desc.Digest)
			}
			return nil
		}},
		{"all platforms", []string{"--all-platforms"}, func(d ocispec.Descriptor) error {
			if d.Digest != idx.Digest {
				return fmt.Errorf("got %s, want the index %s", d.Digest, idx.Digest)
			}
			return nil
		}},
		{"two platforms", []string{"--platform", "linux/arm64,linux/amd64"}, func(d ocispec.Descriptor) error {
			if d.MediaType != ocispec.MediaTypeImageIndex || d.Digest == idx.Digest {
				return fmt.Errorf("want a rewritten index, got %s %s", d.MediaType, d.Digest)
			}
			return nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst := t.TempDir()
			strata(t, append([]string{"copy"}, append(c.flags, "oci:"+src+":multi", "oci:"+dst+":out")...)...)
			if err := c.want(resolve(t, dst, "out")); err != nil {
				t.Fatal(err)
			}
			fsckClean(t, dst)
		})
	}
	// An index cannot go into a docker-archive whole.
	r := strataFail(t, "copy", "--all-platforms", "oci:"+src+":multi", "docker-archive:"+filepath.Join(t.TempDir(), "x.tar"))
	if !strings.Contains(r.Stderr, "index") {
		t.Fatalf("unclear error: %s", r.Stderr)
	}
}

// TestCopyConvert converts media types and compression.
func TestCopyConvert(t *testing.T) {
	src := t.TempDir()
	img := makeImage(t, src, "conv", "linux/amd64", "", "v1")
	read := func(dir, ref string) *layout.Image {
		l, err := layout.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		im, err := l.Image(ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		return im
	}
	dst := t.TempDir()
	strata(t, "copy", "--format", "docker", "oci:"+src+":v1", "oci:"+dst+":docker")
	d := read(dst, "docker")
	if d.Descriptor.MediaType != layout.MediaTypeDockerManifest || d.Manifest.Config.MediaType != layout.MediaTypeDockerConfig ||
		d.Manifest.Layers[0].MediaType != layout.MediaTypeDockerLayerGzip {
		t.Fatalf("not docker: %s %s %s", d.Descriptor.MediaType, d.Manifest.Config.MediaType, d.Manifest.Layers[0].MediaType)
	}
	if d.Manifest.Layers[0].Digest != read(src, "v1").Manifest.Layers[0].Digest {
		t.Fatal("a media type change recompressed the layer")
	}
	strata(t, "copy", "--format", "oci", "oci:"+dst+":docker", "oci:"+dst+":back")
	if got := resolve(t, dst, "back"); got.Digest != img.Desc.Digest {
		t.Fatalf("docker -> oci gave %s, want the original %s", got.Digest, img.Desc.Digest)
	}

	strata(t, "copy", "--compression", "zstd", "oci:"+src+":v1", "oci:"+dst+":zstd")
	z := read(dst, "zstd")
	if z.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerZstd || z.Config.RootFS.DiffIDs[0] != img.DiffID {
		t.Fatalf("zstd: %s %v", z.Manifest.Layers[0].MediaType, z.Config.RootFS.DiffIDs)
	}
	// Only the converted image's blobs reach a fresh destination.
	fresh := t.TempDir()
	strata(t, "copy", "--compression", "zstd", "oci:"+src+":v1", "oci:"+fresh+":zstd")
	if ents, _ := os.ReadDir(filepath.Join(fresh, "blobs", "sha256")); len(ents) != 3 {
		t.Fatalf("%d blobs after a converting copy, want 3 (config, zstd layer, manifest)", len(ents))
	}
	strata(t, "copy", "--compression", "gzip", "--compression-level", "9", "--force-compression", "oci:"+src+":v1", "oci:"+dst+":gz9")
	g := read(dst, "gz9")
	if g.Manifest.Layers[0].Digest == read(src, "v1").Manifest.Layers[0].Digest || g.Config.RootFS.DiffIDs[0] != img.DiffID {
		t.Fatal("--force-compression kept the layer or changed its diffID")
	}
	strata(t, "copy", "--compression", "none", "oci:"+src+":v1", "oci:"+dst+":plain")
	if p := read(dst, "plain"); p.Manifest.Layers[0].Digest != img.DiffID {
		t.Fatalf("uncompressed layer digest %s, want the diffID %s", p.Manifest.Layers[0].Digest, img.DiffID)
	}
	fsckClean(t, dst)

	r := strataFail(t, "copy", "--format", "docker", "oci:"+dst+":zstd", "oci:"+dst+":bad")
	if !strings.Contains(r.Stderr, "zstd") {
		t.Fatalf("unclear error: %s", r.Stderr)
	}
	r = strataFail(t, "copy", "--compression", "bzip2", "oci:"+src+":v1", "oci:"+dst+":bad")
	if r.Code != 2 || !strings.Contains(r.Stderr, "bzip2") {
		t.Fatalf("bzip2 output: exit %d: %s", r.Code, r.Stderr)
	}
	r = strataFail(t, "copy", "oci:"+dst+":zstd", "docker-archive:"+filepath.Join(t.TempDir(), "z.tar"))
	if !strings.Contains(r.Stderr, "zstd") {
		t.Fatalf("unclear error: %s", r.Stderr)
	}
	if got := names(t, dst); strings.Contains(strings.Join(got, " "), "bad") {
		t.Fatalf("a failed copy named an image: %v", got)
	}
}

// TestCopyNames gives several names and canonical names.
func TestCopyNames(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	img := makeImage(t, src, "names", "linux/amd64", "", "v1")
	strata(t, "copy", "--name-canonical", "oci:"+src+":v1", "oci:"+dst+":example.com/x:1,example.com/x:latest")
	want := []string{"example.com/x:1", "example.com/x:latest", "example.com/x@" + img.Desc.Digest.String()}
	if got := names(t, dst); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("names %v, want %v", got, want)
	}
}

// TestSaveLoad saves several images into one archive, through stdout and
// stdin, and checks that archives are deterministic.
func TestSaveLoad(t *testing.T) {
	src := t.TempDir()
	a := makeImage(t, src, "a", "linux/amd64", "", "a:1")
	b := makeImage(t, src, "b", "linux/amd64", "", "b:1")
	for _, format := range []string{"docker-archive", "oci-archive"} {
		t.Run(format, func(t *testing.T) {
			out := strata(t, "save", "--format", format, "-o", "-", src+":a:1", src+":b:1")
			dir := t.TempDir()
			f := filepath.Join(dir, "x.tar")
			strata(t, "save", "--format", format, "-o", f, src+":a:1", src+":b:1")
			onDisk, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal([]byte(out), onDisk) {
				t.Fatal("the same images saved twice gave different archives")
			}
			dst := filepath.Join(dir, "loaded")
			r := runCmd(t, onDisk, strataBin, "--quiet", "load", "-", dst)
			if r.Code != 0 {
				t.Fatalf("load -: %s", r.Stderr)
			}
			if got := resolve(t, dst, "a:1"); got.Digest != a.Desc.Digest {
				t.Fatalf("a:1 is %s, want %s", got.Digest, a.Desc.Digest)
			}
			if got := resolve(t, dst, "b:1"); got.Digest != b.Desc.Digest {
				t.Fatalf("b:1 is %s, want %s", got.Digest, b.Desc.Digest)
			}
			fsckClean(t, dst)
			// Entries are sorted, owned by root and dated 1970.
			tr := tar.NewReader(bytes.NewReader(onDisk))
			prev := ""
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if h.Name < prev || h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
					t.Fatalf("entry %s: not sorted, root-owned and dated 0 (%d:%d %v)", h.Name, h.Uid, h.Gid, h.ModTime)
				}
				prev = h.Name
			}
		})
	}
	// A failed load into a new layout leaves no layout behind, nor files
	// in an empty directory.
	empty := t.TempDir()
	missing := filepath.Join(empty, "new")
	for _, dst := range []string{missing, empty} {
		r := strataFail(t, "load", filepath.Join(src, "index.json"), dst)
		if r.Code != 1 {
			t.Fatalf("load of a non-archive: exit %d", r.Code)
		}
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("a failed load left %d files", len(ents))
	}
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	name, link string
	typ        byte
	body       []byte
}

func writeTar(t testing.TB, path string, ents []tarEntry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		h := &tar.Header{Typeflag: typ, Name: e.name, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		if typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// layoutEntries returns the blobs of image desc in the layout at dir as
// archive entries under blobs/, and the image's manifest.
func layoutEntries(t testing.TB, dir string, desc ocispec.Descriptor) ([]tarEntry, *layout.Image) {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var ents []tarEntry
	err = l.Walk(desc, func(d ocispec.Descriptor, _ []byte) error {
		b, err := l.Blobs().ReadAll(d.Digest, d.Size, 1<<30)
		if err != nil {
			return err
		}
		ents = append(ents, tarEntry{name: "blobs/sha256/" + d.Digest.Encoded(), body: b})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.ReadImage(desc)
	if err != nil {
		t.Fatal(err)
	}
	return ents, img
}

func jsonBytes(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestLoadDockerDialects reads archives in the formats strata does not
// write itself: Docker 25's (OCI layout plus manifest.json into blobs/, a
// containerd name), manifest.json into blobs/ alone, and the legacy
// <id>/layer.tar layout with a symlinked duplicate layer.
func TestLoadDockerDialects(t *testing.T) {
	src := t.TempDir()
	img := makeImage(t, src, "dialect", "linux/amd64", layout.CompressionNone)
	blobs, im := layoutEntries(t, src, img.Desc)
	cfgPath := "blobs/sha256/" + im.Manifest.Config.Digest.Encoded()
	layerPath := "blobs/sha256/" + im.Manifest.Layers[0].Digest.Encoded()
	manifestJSON := jsonBytes(t, []map[string]any{{"Config": cfgPath, "RepoTags": []string{"x:1"}, "Layers": []string{layerPath}}})
	desc := img.Desc
	desc.Annotations = map[string]string{"io.containerd.image.name": "docker.io/library/x:1", ocispec.AnnotationRefName: "1"}
	docker25 := append(append([]tarEntry{}, blobs...),
		tarEntry{name: "index.json", body: jsonBytes(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}})},
		tarEntry{name: "manifest.json", body: manifestJSON},
		tarEntry{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		tarEntry{name: "repositories", body: []byte(`{"x":{"1":"` + im.Manifest.Layers[0].Digest.Encoded() + `"}}`)},
	)
	manifestOnly := append(append([]tarEntry{}, blobs...), tarEntry{name: "manifest.json", body: manifestJSON})

	layer := busyboxTar(t, "dialect")
	// The uncompressed layer twice, the second a symlink, as docker save
	// writes a repeated layer.
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	sum := sha256.Sum256(layer)
	diffID := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(sum[:]))
	_ = cfg.AppendLayer(diffID)
	_ = cfg.AppendLayer(diffID)
	cb, _ := cfg.Bytes()
	cfgHex := digest.FromBytes(cb).Encoded()
	legacy := []tarEntry{
		{name: "aaaa/", typ: tar.TypeDir},
		{name: "aaaa/layer.tar", body: layer},
		{name: "aaaa/VERSION", body: []byte("1.0")},
		{name: "bbbb/", typ: tar.TypeDir},
		{name: "bbbb/layer.tar", typ: tar.TypeSymlink, link: "../aaaa/layer.tar"},
		{name: cfgHex + ".json", body: cb},
		{name: "manifest.json", body: jsonBytes(t, []map[string]any{{"Config": cfgHex + ".json", "RepoTags": []string{"legacy:1"}, "Layers": []string{"aaaa/layer.tar", "bbbb/layer.tar"}}})},
		{name: "repositories", body: []byte(`{"legacy":{"1":"bbbb"}}`)},
	}
	// crane: config named sha256:<hex>, gzip layers named <hex>.tar.gz.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(layer)
	zw.Close()
	ccfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	_ = ccfg.AppendLayer(diffID)
	ccb, _ := ccfg.Bytes()
	gzHex := digest.FromBytes(gz.Bytes()).Encoded()
	crane := []tarEntry{
		{name: "sha256:" + digest.FromBytes(ccb).Encoded(), body: ccb},
		{name: gzHex + ".tar.gz", body: gz.Bytes()},
		{name: "manifest.json", body: jsonBytes(t, []map[string]any{{"Config": "sha256:" + digest.FromBytes(ccb).Encoded(), "RepoTags": []string{"crane.example/x:1"}, "Layers": []string{gzHex + ".tar.gz"}}})},
	}
	cases := []struct {
		name     string
		ents     []tarEntry
		ref      string
		sameDesc bool
	}{
		{"docker25", docker25, "docker.io/library/x:1", true},
		{"crane", crane, "crane.example/x:1", false},
		{"manifest.json into blobs", manifestOnly, "x:1", false},
		{"legacy", legacy, "legacy:1", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "a.tar")
			writeTar(t, f, c.ents)
			dst := filepath.Join(dir, "l")
			strata(t, "load", f, dst)
			got := resolve(t, dst, c.ref)
			if c.sameDesc && got.Digest != img.Desc.Digest {
				t.Fatalf("digest %s, want %s", got.Digest, img.Desc.Digest)
			}
			fsckClean(t, dst)
			// And it goes on: out to a docker-archive and back.
			strata(t, "copy", "oci:"+dst+":"+c.ref, "docker-archive:"+filepath.Join(dir, "again.tar"))
			strata(t, "load", filepath.Join(dir, "again.tar"), filepath.Join(dir, "l2"))
			if again := resolve(t, filepath.Join(dir, "l2"), c.ref); again.Digest != got.Digest {
				t.Fatalf("after a second trip: %s, want %s", again.Digest, got.Digest)
			}
		})
	}
}

// snapshotLayout records index.json and the set of blobs of a layout.
func snapshotLayout(t testing.TB, dir string) string {
	t.Helper()
	idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var blobs []string
	_ = filepath.Walk(filepath.Join(dir, "blobs"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			blobs = append(blobs, p)
		}
		return nil
	})
	sort.Strings(blobs)
	return string(idx) + "\n" + strings.Join(blobs, "\n")
}

// TestLoadHostileArchives refuses archives made to attack or confuse the
// reader, with a clear error, leaving the destination layout unchanged.
func TestLoadHostileArchives(t *testing.T) {
	src := t.TempDir()
	img := makeImage(t, src, "hostile", "linux/amd64", layout.CompressionNone)
	blobs, im := layoutEntries(t, src, img.Desc)
	cfgPath := "blobs/sha256/" + im.Manifest.Config.Digest.Encoded()
	layerPath := "blobs/sha256/" + im.Manifest.Layers[0].Digest.Encoded()
	manifest := func(cfg string, layers ...string) tarEntry {
		return tarEntry{name: "manifest.json", body: jsonBytes(t, []map[string]any{{"Config": cfg, "RepoTags": []string{"evil:1"}, "Layers": layers}})}
	}
	with := func(extra ...tarEntry) []tarEntry { return append(append([]tarEntry{}, blobs...), extra...) }
	goodIndex := tarEntry{name: "index.json", body: jsonBytes(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{img.Desc}})}
	var good bytes.Buffer
	{
		dir := t.TempDir()
		f := filepath.Join(dir, "good.tar")
		writeTar(t, f, with(manifest(cfgPath, layerPath), goodIndex))
		b, _ := os.ReadFile(f)
		good.Write(b)
	}
	tampered := append([]tarEntry{}, blobs...)
	for i := range tampered {
		if tampered[i].name == layerPath {
			body := append([]byte{}, tampered[i].body...)
			body[len(body)/2] ^= 0xff
			tampered[i].body = body
		}
	}
	cases := []struct {
		name string
		ents []tarEntry
		raw  []byte
		want string
	}{
		{"dotdot entry", with(tarEntry{name: "../../evil", body: []byte("x")}, manifest(cfgPath, layerPath)), nil, ".."},
		{"nested dotdot entry", with(tarEntry{name: "blobs/../../evil", body: []byte("x")}, manifest(cfgPath, layerPath)), nil, ".."},
		{"absolute entry", with(tarEntry{name: "/etc/evil", body: []byte("x")}, manifest(cfgPath, layerPath)), nil, "absolute"},
		{"symlinked blob", append([]tarEntry{{name: "blobs/sha256/" + strings.Repeat("a", 64), typ: tar.TypeSymlink, link: "/etc/passwd"}}, with(manifest(cfgPath, layerPath))...), nil, "link"},
		{"symlink out of the archive", with(tarEntry{name: "l.tar", typ: tar.TypeSymlink, link: "../../../etc/passwd"}, manifest(cfgPath, "l.tar")), nil, "outside"},
		{"manifest.json points outside", with(manifest(cfgPath, "../../../etc/passwd")), nil, ".."},
		{"manifest.json points at an absolute path", with(manifest(cfgPath, "/etc/passwd")), nil, "outside"},
		{"manifest.json points at nothing", with(manifest(cfgPath, "nothing.tar")), nil, "not in the archive"},
		{"digest mismatch", append(tampered, manifest(cfgPath, layerPath)), nil, "digest mismatch"},
		{"diff_id mismatch", with(tarEntry{name: "other.tar", body: busyboxTar(t, "other")}, manifest(cfgPath, "other.tar")), nil, "diff_id"},
		{"index names a missing blob", []tarEntry{goodIndex, {name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}}, nil, "blob"},
		{"duplicate entry", with(manifest(cfgPath, layerPath), manifest(cfgPath, layerPath)), nil, "twice"},
		{"truncated", nil, good.Bytes()[:good.Len()/2], "truncated"},
		{"not an archive", nil, []byte("hello, this is not a tar file at all, but it is long enough to be read as one........" + strings.Repeat("x", 1024)), "archive"},
		{"empty", nil, []byte{}, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "layout")
			makeImage(t, dst, "existing", "linux/amd64", "", "existing")
			before := snapshotLayout(t, dst)
			f := filepath.Join(dir, "a.tar")
			if c.raw != nil {
				if err := os.WriteFile(f, c.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				writeTar(t, f, c.ents)
			}
			r := strataFail(t, "load", f, dst)
			if r.Code != 1 || !strings.Contains(r.Stderr, c.want) {
				t.Fatalf("exit %d, want 1 and an error saying %q:\n%s", r.Code, c.want, r.Stderr)
			}
			if after := snapshotLayout(t, dst); after != before {
				t.Fatalf("the layout changed:\nbefore %s\nafter %s", before, after)
			}
			if _, err := os.Stat("/etc/evil"); err == nil {
				t.Fatal("/etc/evil was written")
			}
			ents, _ := os.ReadDir(filepath.Join(dst, ".strata"))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "archive-") {
					t.Fatalf("staging %s left behind", e.Name())
				}
			}
		})
	}
}

// TestSkopeoInterop: skopeo reads strata's archives, strata reads
// skopeo's.
func TestSkopeoInterop(t *testing.T) {
	needTool(t, "skopeo")
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img := makeImage(t, src, "skopeo", "linux/amd64", "", "example.com/strata/s:1")
	for _, format := range []string{"oci-archive", "docker-archive"} {
		f := filepath.Join(dir, format+".tar")
		strata(t, "copy", "oci:"+src+":example.com/strata/s:1", format+":"+f)
		var info struct{ Digest string }
		if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", format+":"+f)), &info); err != nil {
			t.Fatal(err)
		}
		if format == "oci-archive" && info.Digest != img.Desc.Digest.String() {
			t.Fatalf("skopeo inspect %s: digest %s, want %s", format, info.Digest, img.Desc.Digest)
		}
	}
	cases := []struct {
		dst, ref   string
		sameDigest bool
	}{
		{"docker-archive:" + filepath.Join(dir, "sk-d.tar") + ":example.com/strata/s:2", "example.com/strata/s:2", false},
		{"oci-archive:" + filepath.Join(dir, "sk-o.tar") + ":example.com/strata/s:3", "example.com/strata/s:3", true},
	}
	for _, c := range cases {
		mustRun(t, "skopeo", "copy", "oci:"+src+":example.com/strata/s:1", c.dst)
		f, _, _ := strings.Cut(strings.SplitN(c.dst, ":", 2)[1], ":")
		dst := filepath.Join(t.TempDir(), "l")
		strata(t, "load", f, dst)
		fsckClean(t, dst)
		got := resolve(t, dst, c.ref)
		if c.sameDigest && got.Digest != img.Desc.Digest {
			t.Fatalf("%s: digest %s, want %s", c.dst, got.Digest, img.Desc.Digest)
		}
	}
}

// TestLoadInterrupted kills strata while it reads an archive from stdin:
// the layout is as it was, and the next load clears what the killed one
// left in .strata.
func TestLoadInterrupted(t *testing.T) {
	src := t.TempDir()
	makeImage(t, src, "interrupted", "linux/amd64", layout.CompressionNone, "i:1")
	archive := []byte(strata(t, "save", "-o", "-", src+":i:1"))
	dir := t.TempDir()
	dst := filepath.Join(dir, "l")
	makeImage(t, dst, "existing", "linux/amd64", "", "existing")
	before := snapshotLayout(t, dst)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		cmd := exec.Command(strataBin, "--quiet", "load", "-", dst)
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write(archive[:len(archive)/2]); err != nil {
			t.Fatal(err)
		}
		// Wait until it is busy staging, then interrupt it.
		deadline := time.Now().Add(30 * time.Second)
		for {
			ents, _ := os.ReadDir(filepath.Join(dst, ".strata"))
			busy := false
			for _, e := range ents {
				busy = busy || strings.HasPrefix(e.Name(), "archive-")
			}
			if busy || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := cmd.Wait(); err == nil {
			t.Fatalf("load survived %v", sig)
		}
		if after := snapshotLayout(t, dst); after != before {
			t.Fatalf("%v: the layout changed:\nbefore %s\nafter %s", sig, before, after)
		}
	}
	// The next load completes and sweeps the killed load's staging.
	r := runCmd(t, archive, strataBin, "--quiet", "load", "-", dst)
	if r.Code != 0 {
		t.Fatalf("load: %s", r.Stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(dst, ".strata"))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "archive-") {
			t.Fatalf("staging %s left behind", e.Name())
		}
	}
	// Loaded names are stored fully qualified, as docker and podman
	// record them.
	if got := names(t, dst); strings.Join(got, " ") != "docker.io/library/i:1 existing" {
		t.Fatalf("names %v", got)
	}
	fsckClean(t, dst)
}
