package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// interopTar is a small root filesystem tar: a directory, a file and a
// symlink.
func interopTar(t testing.TB, marker string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	ents := []*tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/marker", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(marker))},
		{Name: "marker", Typeflag: tar.TypeSymlink, Linkname: "etc/marker", Mode: 0o777},
	}
	for _, h := range ents {
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(marker))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// interopImage writes a one-layer image for platform p with the layout
// package (as strata's import path does) and returns its manifest
// descriptor. The config carries fields strata does not model.
func interopImage(t testing.TB, l *layout.Layout, p, marker string) ocispec.Descriptor {
	t.Helper()
	ly, err := l.PutLayer(context.Background(), bytes.NewReader(interopTar(t, marker)), layout.WithCompression(layout.CompressionGzip))
	if err != nil {
		t.Fatal(err)
	}
	plat, err := layout.ParsePlatform(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(plat)
	cfg.AppendLayer(ly.DiffID)
	cfg.SetRuntime("Cmd", []string{"/bin/cat", "/marker"})
	cfg.SetRuntime("Env", []string{"MARKER=" + marker})
	cfg.SetRuntime("Healthcheck", map[string]any{"Test": []string{"CMD", "true"}})
	// umoci stat crashes on a history entry without "created".
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg.Set("created", created)
	cfg.AppendHistory(ocispec.History{Created: &created, CreatedBy: "interop " + marker})
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, map[string]string{"org.example.marker": marker})
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// interopLayout is a strata-written layout holding a single-platform image
// under a tag and a full name, a two-platform index and an untagged image.
type interopLayout struct {
	dir                     string
	single, index, untagged ocispec.Descriptor
	amd64, arm64            ocispec.Descriptor
}

func newInteropLayout(t testing.TB) interopLayout {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "strata")
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	il := interopLayout{dir: dir}
	il.single = interopImage(t, l, "linux/amd64", "single")
	il.amd64 = interopImage(t, l, "linux/amd64", "multi-amd64")
	il.arm64 = interopImage(t, l, "linux/arm64/v8", "multi-arm64")
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{il.amd64, il.arm64}}
	idx.SchemaVersion = 2
	if il.index, err = l.PutJSON(ocispec.MediaTypeImageIndex, idx); err != nil {
		t.Fatal(err)
	}
	il.untagged = interopImage(t, l, "linux/amd64", "untagged")
	if err := l.Tag(il.single, "v1", "docker.io/library/single:1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(il.index, "multi"); err != nil {
		t.Fatal(err)
	}
	if err := l.AddUntagged(il.untagged); err != nil {
		t.Fatal(err)
	}
	return il
}

// strataNames lists a layout with `strata ls --json`: name (or @digest of
// an untagged image) to manifest digest.
func strataNames(t testing.TB, dir string) map[string]digest.Digest {
	t.Helper()
	var ents []layout.Entry
	out := strata(t, "ls", "--json", dir)
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("strata ls --json %s: %v\n%s", dir, err, out)
	}
	got := map[string]digest.Digest{}
	for _, e := range ents {
		if e.Err != "" {
			t.Errorf("strata ls %s: %s: %s", dir, e.Name, e.Err)
		}
		n := e.Name
		if n == "" {
			n = "@" + e.Descriptor.Digest.String()
		}
		got[n] = e.Descriptor.Digest
	}
	return got
}

// strataFsckClean runs strata fsck and fails on any problem.
func strataFsckClean(t testing.TB, dir string) {
	t.Helper()
	r := runCmd(t, nil, strataBin, "--quiet", "fsck", dir)
	if r.Code != 0 {
		t.Fatalf("strata fsck %s: exit %d\n%s%s", dir, r.Code, r.Stdout, r.Stderr)
	}
}

// strataConfig reads an image's config with strata inspect --raw config.
func strataConfig(t testing.TB, ref string, platform string) ocispec.Image {
	t.Helper()
	args := []string{"inspect", "--raw", "config", ref}
	if platform != "" {
		args = append(args, "--platform", platform)
	}
	var img ocispec.Image
	if err := json.Unmarshal([]byte(strata(t, args...)), &img); err != nil {
		t.Fatalf("config of %s: %v", ref, err)
	}
	return img
}

type skopeoInfo struct {
	Digest       string
	Architecture string
	Os           string
	Layers       []string
	Env          []string
}

func skopeoInspect(t testing.TB, ref string, extra ...string) skopeoInfo {
	t.Helper()
	var info skopeoInfo
	out := mustRun(t, "skopeo", append(append([]string{}, extra...), "inspect", ref)...)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return info
}

// Layouts strata writes are read by skopeo, umoci and oci-image-tool.
func TestInteropPeersReadStrataLayouts(t *testing.T) {
	for _, tool := range []string{"skopeo", "umoci", "oci-image-tool"} {
		needTool(t, tool)
	}
	il := newInteropLayout(t)
	strataFsckClean(t, il.dir)

	// Every reference, the index and the untagged image included. (With
	// --ref name=X this oci-image-tool also counts entries without a name
	// as matches, so it is not used on a layout with untagged images.)
	validateLayout(t, il.dir)

	for _, ref := range []string{"v1", "docker.io/library/single:1"} {
		info := skopeoInspect(t, "oci:"+il.dir+":"+ref)
		if info.Digest != il.single.Digest.String() || info.Architecture != "amd64" || info.Os != "linux" ||
			len(info.Layers) != 1 || !slices.Contains(info.Env, "MARKER=single") {
			t.Errorf("skopeo inspect %s: %+v", ref, info)
		}
	}
	// skopeo picks the requested platform out of strata's index, and
	// reads the index itself byte for byte.
	info := skopeoInspect(t, "oci:"+il.dir+":multi", "--override-arch", "arm64")
	// (skopeo reports the digest of what the reference names: the index.)
	if info.Digest != il.index.Digest.String() || info.Architecture != "arm64" || !slices.Contains(info.Env, "MARKER=multi-arm64") {
		t.Errorf("skopeo inspect multi for arm64: %+v", info)
	}
	raw := mustRun(t, "skopeo", "inspect", "--raw", "oci:"+il.dir+":multi")
	if digest.FromString(raw) != il.index.Digest {
		t.Errorf("skopeo inspect --raw multi hashes to %s, want %s", digest.FromString(raw), il.index.Digest)
	}

	// Every name strata writes is one skopeo can address; names outside
	// the image-spec grammar are refused.
	edgeNames := []string{"a--b", "x+y:1.0", "localhost:5000/n/m:t", "V_1.2-rc.3"}
	strata(t, append([]string{"tag", il.dir + ":v1"}, edgeNames...)...)
	for _, n := range edgeNames {
		if info := skopeoInspect(t, "oci:"+il.dir+":"+n); info.Digest != il.single.Digest.String() {
			t.Errorf("skopeo inspect %s: %s", n, info.Digest)
		}
	}
	for _, n := range []string{"a__b", "_x", "a=b", "x-"} {
		strataFail(t, "tag", il.dir+":v1", n)
	}
	rm := []string{"rm"}
	for _, n := range edgeNames {
		rm = append(rm, il.dir+":"+n)
	}
	strata(t, rm...)

	got := strings.Fields(mustRun(t, "umoci", "ls", "--layout", il.dir))
	sort.Strings(got)
	if !slices.Equal(got, []string{"docker.io/library/single:1", "multi", "v1"}) {
		t.Errorf("umoci ls: %v", got)
	}
	mustRun(t, "umoci", "stat", "--image", il.dir+":v1")

	// umoci unpacks strata's layer into a bundle.
	bundle := filepath.Join(t.TempDir(), "bundle")
	args := []string{"unpack", "--image", il.dir + ":v1", bundle}
	if os.Geteuid() != 0 {
		args = append([]string{"unpack", "--rootless"}, args[1:]...)
	}
	mustRun(t, "umoci", args...)
	if b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "marker")); err != nil || string(b) != "single" {
		t.Errorf("umoci unpack: rootfs/marker = %q, %v", b, err)
	}

	// strata itself lists and inspects everything, the untagged image by
	// digest.
	names := strataNames(t, il.dir)
	want := map[string]digest.Digest{
		"v1": il.single.Digest, "docker.io/library/single:1": il.single.Digest,
		"multi": il.index.Digest, "@" + il.untagged.Digest.String(): il.untagged.Digest,
	}
	if len(names) != len(want) {
		t.Errorf("strata ls: %v", names)
	}
	for n, d := range want {
		if names[n] != d {
			t.Errorf("strata ls: %s = %s, want %s", n, names[n], d)
		}
	}
	for _, p := range []string{"linux/arm64", "linux/arm64/v8"} {
		if c := strataConfig(t, il.dir+":multi", p); c.Architecture != "arm64" || !slices.Contains(c.Config.Env, "MARKER=multi-arm64") {
			t.Errorf("strata inspect multi %s: %s %v", p, c.Architecture, c.Config.Env)
		}
	}
	if c := strataConfig(t, il.dir+":@"+il.untagged.Digest.String(), ""); !slices.Contains(c.Config.Env, "MARKER=untagged") {
		t.Errorf("strata inspect untagged: %v", c.Config.Env)
	}
}

// Layouts umoci and skopeo write are read by strata.
func TestInteropStrataReadsPeerLayouts(t *testing.T) {
	for _, tool := range []string{"skopeo", "umoci"} {
		needTool(t, tool)
	}
	// umoci builds an image from scratch.
	u := filepath.Join(t.TempDir(), "umoci")
	mustRun(t, "umoci", "init", "--layout", u)
	mustRun(t, "umoci", "new", "--image", u+":t")
	mustRun(t, "umoci", "config", "--image", u+":t", "--config.cmd=/bin/sh", "--config.env=FROM=umoci",
		"--config.label=org.example=yes", "--author=tester")
	names := strataNames(t, u)
	if _, ok := names["t"]; !ok || len(names) != 1 {
		t.Fatalf("strata ls of umoci's layout: %v", names)
	}
	strataFsckClean(t, u)
	c := strataConfig(t, u+":t", "")
	if !slices.Equal(c.Config.Cmd, []string{"/bin/sh"}) || !slices.Contains(c.Config.Env, "FROM=umoci") ||
		c.Config.Labels["org.example"] != "yes" || c.Author != "tester" {
		t.Errorf("strata inspect of umoci's image: %+v", c)
	}
	// The library reads it too, and strata can tag inside umoci's layout.
	strata(t, "tag", u+":t", "t2")
	got := strings.Fields(mustRun(t, "umoci", "ls", "--layout", u))
	sort.Strings(got)
	if !slices.Equal(got, []string{"t", "t2"}) {
		t.Errorf("umoci ls after strata tag: %v", got)
	}

	// skopeo copies strata-written images into a new layout: one image
	// under a new name, and the whole index.
	il := newInteropLayout(t)
	b := filepath.Join(t.TempDir(), "skopeo")
	mustRun(t, "skopeo", "copy", "--quiet", "oci:"+il.dir+":v1", "oci:"+b+":y")
	mustRun(t, "skopeo", "copy", "--quiet", "--all", "oci:"+il.dir+":multi", "oci:"+b+":docker.io/example/multi:2")
	names = strataNames(t, b)
	if names["y"] != il.single.Digest || names["docker.io/example/multi:2"] != il.index.Digest || len(names) != 2 {
		t.Errorf("strata ls of skopeo's layout: %v", names)
	}
	strataFsckClean(t, b)
	if c := strataConfig(t, b+":docker.io/example/multi:2", "linux/arm64"); !slices.Contains(c.Config.Env, "MARKER=multi-arm64") {
		t.Errorf("arm64 image of skopeo's copy: %v", c.Config.Env)
	}
	// Fields strata does not model survived the trip.
	raw := strata(t, "inspect", "--raw", "config", b+":y")
	if !strings.Contains(raw, `"Healthcheck"`) {
		t.Errorf("Healthcheck lost: %s", raw)
	}

	// umoci edits a strata-written image; strata reads the result and gc
	// by either tool leaves a layout the other accepts.
	mustRun(t, "umoci", "config", "--image", il.dir+":v1", "--tag", "v2", "--config.env=EDITED=1")
	names = strataNames(t, il.dir)
	if names["v2"] == "" || names["v2"] == il.single.Digest {
		t.Fatalf("strata ls after umoci config: %v", names)
	}
	if c := strataConfig(t, il.dir+":v2", ""); !slices.Contains(c.Config.Env, "EDITED=1") || !slices.Contains(c.Config.Env, "MARKER=single") {
		t.Errorf("umoci's edit: %v", c.Config.Env)
	}
	mustRun(t, "umoci", "gc", "--layout", il.dir)
	strataFsckClean(t, il.dir)
	if got := strataNames(t, il.dir); len(got) != 5 {
		t.Errorf("strata ls after umoci gc: %v", got)
	}
	strata(t, "rm", il.dir+":v1", il.dir+":docker.io/library/single:1")
	strata(t, "gc", il.dir)
	strataFsckClean(t, il.dir)
	validateLayout(t, il.dir)
	got = strings.Fields(mustRun(t, "umoci", "ls", "--layout", il.dir))
	sort.Strings(got)
	if !slices.Equal(got, []string{"multi", "v2"}) {
		t.Errorf("umoci ls after strata rm+gc: %v", got)
	}
	mustRun(t, "umoci", "stat", "--image", il.dir+":v2")
	mustRun(t, "skopeo", "inspect", "oci:"+il.dir+":v2")
}

// A blob corrupted on disk is reported by strata fsck (one line naming
// it) and refused by strata inspect; skopeo refuses it too.
func TestInteropCorruptBlob(t *testing.T) {
	needTool(t, "skopeo")
	il := newInteropLayout(t)
	l, err := layout.Open(il.dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.ReadImage(il.single)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := img.Manifest.Config.Digest
	p := filepath.Join(il.dir, "blobs", cfg.Algorithm().String(), cfg.Encoded())
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x20
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, strataBin, "--quiet", "fsck", il.dir)
	if r.Code != 1 {
		t.Fatalf("strata fsck of a corrupt layout: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if strings.Contains(line, cfg.String()) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "digest mismatch") {
		t.Errorf("strata fsck output:\n%s", r.Stdout)
	}
	if r := strataFail(t, "inspect", il.dir+":v1"); !strings.Contains(r.Stderr, "digest mismatch") {
		t.Errorf("strata inspect of a corrupt config: %s", r.Stderr)
	}
	if r := runCmd(t, nil, "skopeo", "copy", "--quiet", "oci:"+il.dir+":v1", "oci:"+filepath.Join(t.TempDir(), "x")+":x"); r.Code == 0 {
		t.Error("skopeo copied a corrupt image")
	}
	// The other images are untouched.
	strataConfig(t, il.dir+":multi", "linux/amd64")
}

// validateLayout runs oci-image-tool over a whole layout. Debian's
// oci-image-tool (1.0.0-rc1) has no "imageLayout" type yet: "image" on a
// directory with no --ref validates every reference in index.json.
func validateLayout(t testing.TB, dir string) {
	t.Helper()
	out := mustRun(t, "oci-image-tool", "validate", "--type", "image", dir)
	if !strings.Contains(out, "imageLayout") {
		t.Errorf("oci-image-tool did not see %s as an image layout: %s", dir, out)
	}
}
