package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
)

func mustPlatform(t testing.TB, s string) ocispec.Platform {
	t.Helper()
	p, err := ParsePlatform(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// initTest creates an empty layout in a temporary directory.
func initTest(t testing.TB) *Layout {
	t.Helper()
	l, err := Init(filepath.Join(t.TempDir(), "layout"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// addImage stores an image for platform with one small layer per entry of
// layers and returns its manifest descriptor (not named).
func addImage(t testing.TB, l *Layout, platform string, layers ...string) ocispec.Descriptor {
	t.Helper()
	cfg := NewConfig(mustPlatform(t, platform))
	var descs []ocispec.Descriptor
	for _, ly := range layers {
		d, err := l.PutBytes(ocispec.MediaTypeImageLayer, []byte(ly))
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
		if err := cfg.AppendLayer(digest.FromString(ly)); err != nil {
			t.Fatal(err)
		}
	}
	md, err := l.PutImage(cfg, descs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// addIndex stores an OCI index of descs.
func addIndex(t testing.TB, l *Layout, descs ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs}
	d, err := l.PutJSON(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func names(t testing.TB, l *Layout) []string {
	t.Helper()
	ents, err := l.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Err != "" {
			t.Errorf("list entry %s: %s", e.Name, e.Err)
		}
		n := e.Name
		if n == "" {
			n = "@" + e.Descriptor.Digest.String()
		}
		out = append(out, n)
	}
	return out
}

func mustFsckClean(t testing.TB, l *Layout) {
	t.Helper()
	probs, err := l.Fsck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Errorf("fsck: %s", p)
	}
}

func TestInitWritesLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout: %q %v", b, err)
	}
	b, err = os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx map[string]any
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if idx["schemaVersion"] != 2.0 || idx["mediaType"] != ocispec.MediaTypeImageIndex {
		t.Errorf("index.json: %s", b)
	}
	if m, ok := idx["manifests"].([]any); !ok || len(m) != 0 {
		t.Errorf("index.json manifests must be an empty array: %s", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, "blobs")); err != nil || !fi.IsDir() {
		t.Errorf("blobs: %v", err)
	}
	// Init of an existing layout opens it and keeps its images.
	md := addImage(t, l, "linux/amd64")
	if err := l.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}
	l2, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if got := names(t, l2); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("re-init lost images: %v", got)
	}
}

func TestInitRefusesNonEmptyDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644)
	if _, err := Init(dir); !errors.Is(err, ErrNotLayout) || !strings.Contains(err.Error(), "notes.txt") {
		t.Fatalf("Init on a non-empty directory: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("Init changed a directory it refused: %d entries", len(ents))
	}
}

// An Init killed before it wrote oci-layout can be run again.
func TestInitFinishesInterruptedInit(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "blobs"), 0o755)
	os.WriteFile(filepath.Join(dir, ".index.json.tmp-123"), []byte("{"), 0o644)
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := Open(dir); err != nil {
		t.Fatal(err)
	}
}

func TestOpenNonLayout(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, nil, 0o644)
	badMarker := filepath.Join(tmp, "bad")
	os.Mkdir(badMarker, 0o755)
	os.WriteFile(filepath.Join(badMarker, "oci-layout"), []byte("not json"), 0o644)
	noVersion := filepath.Join(tmp, "nover")
	os.Mkdir(noVersion, 0o755)
	os.WriteFile(filepath.Join(noVersion, "oci-layout"), []byte("{}"), 0o644)
	noIndex := filepath.Join(tmp, "noindex")
	os.Mkdir(noIndex, 0o755)
	os.WriteFile(filepath.Join(noIndex, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	tests := []struct {
		name, dir string
		notLayout bool
	}{
		{"empty dir", tmp, true},
		{"missing", filepath.Join(tmp, "missing"), false},
		{"a file", file, false},
		{"bad marker", badMarker, true},
		{"no version", noVersion, true},
		{"no index", noIndex, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(tt.dir)
			if err == nil {
				t.Fatal("opened a non-layout")
			}
			if errors.Is(err, ErrNotLayout) != tt.notLayout {
				t.Errorf("ErrNotLayout %v: %v", tt.notLayout, err)
			}
			if !strings.Contains(err.Error(), tt.dir) {
				t.Errorf("error does not name the directory: %v", err)
			}
		})
	}
}

// Unknown top-level fields, unknown media types and unknown files are
// tolerated and survive index updates, gc and fsck.
func TestUnknownContentTolerated(t *testing.T) {
	l := initTest(t)
	art, err := l.PutBytes("application/vnd.example.thing.v1+json", []byte(`{"thing":1}`))
	if err != nil {
		t.Fatal(err)
	}
	art.Annotations = map[string]string{AnnotationRefName: "thing", "com.example.note": "kept"}
	idx := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ocispec.MediaTypeImageIndex,
		"manifests":     []any{art},
		"annotations":   map[string]string{"com.example.layout": "yes"},
		"x-future":      map[string]any{"nested": []int{1, 2, 3}},
	}
	b, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(l.Dir(), "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(l.Dir(), "README"), []byte("unknown file"), 0o644)

	md := addImage(t, l, "linux/amd64", "layer")
	if err := l.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); !slices.Equal(got, []string{"thing", "v1"}) {
		t.Errorf("names %v", got)
	}
	d, err := l.Resolve("thing")
	if err != nil || d.Digest != art.Digest {
		t.Fatalf("resolve unknown media type: %v", err)
	}
	if _, err := l.Image("thing", nil); err == nil {
		t.Error("an unknown media type was read as an image")
	}
	mustFsckClean(t, l)
	res, err := l.GC(context.Background())
	if err != nil || len(res.Removed) != 0 {
		t.Fatalf("gc removed %v: %v", res, err)
	}
	b, _ = os.ReadFile(filepath.Join(l.Dir(), "index.json"))
	var after map[string]json.RawMessage
	json.Unmarshal(b, &after)
	if string(after["x-future"]) != `{"nested":[1,2,3]}` {
		t.Errorf("unknown field lost: %s", b)
	}
	if !bytes.Contains(after["annotations"], []byte("com.example.layout")) ||
		!bytes.Contains(after["manifests"], []byte("com.example.note")) {
		t.Errorf("annotations lost: %s", b)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), "README")); err != nil {
		t.Error("unknown file removed")
	}
}

func TestConfigEditsKeepUnknownFields(t *testing.T) {
	raw := `{"architecture":"amd64","os":"linux","created":"2020-01-01T00:00:00Z",` +
		`"config":{"Cmd":["sh"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"OnBuild":["RUN x"],"Labels":{"a":"b"}},` +
		`"rootfs":{"type":"layers","diff_ids":[]},"history":[{"created_by":"init","x-hist":true}],` +
		`"container_config":{"Hostname":"abc"},"future":{"v":2}}`
	c, err := ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	var cmd []string
	if ok, err := c.GetRuntime("Cmd", &cmd); !ok || err != nil || !slices.Equal(cmd, []string{"sh"}) {
		t.Fatalf("GetRuntime Cmd: %v %v %v", cmd, ok, err)
	}
	c.SetRuntime("Cmd", []string{"/bin/app"})
	c.SetRuntime("Labels", nil)
	c.Set("author", "me")
	c.AppendLayer(digest.FromString("layer"))
	c.AppendHistory(ocispec.History{CreatedBy: "strata test"})
	out, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"future":           `{"v":2}`,
		"container_config": `{"Hostname":"abc"}`,
		"created":          `"2020-01-01T00:00:00Z"`,
		"author":           `"me"`,
	} {
		if string(got[k]) != want {
			t.Errorf("%s = %s, want %s", k, got[k], want)
		}
	}
	var run map[string]json.RawMessage
	json.Unmarshal(got["config"], &run)
	if string(run["Healthcheck"]) != `{"Test":["CMD","true"],"Interval":1000000000}` || string(run["OnBuild"]) != `["RUN x"]` {
		t.Errorf("runtime config lost fields: %s", got["config"])
	}
	if _, ok := run["Labels"]; ok {
		t.Error("SetRuntime(nil) did not remove the field")
	}
	if !bytes.Contains(got["history"], []byte(`"x-hist":true`)) || !bytes.Contains(got["history"], []byte("strata test")) {
		t.Errorf("history: %s", got["history"])
	}
	img, err := c.Image()
	if err != nil || len(img.RootFS.DiffIDs) != 1 || img.Config.Cmd[0] != "/bin/app" {
		t.Fatalf("typed view: %+v %v", img, err)
	}
	// Equal configs encode to equal bytes.
	c2, _ := ParseConfig(out)
	out2, _ := c2.Bytes()
	if !bytes.Equal(out, out2) {
		t.Error("re-encoding changed the bytes")
	}
	for _, bad := range []string{"", "null", "[]", `"x"`, `{"config":[1]}`} {
		if _, err := ParseConfig([]byte(bad)); err == nil {
			t.Errorf("ParseConfig(%q) accepted", bad)
		}
	}
}

// TestConfigEditsKeepBytes: "&", "<" and ">" and the spacing of fields
// no edit touched stay as they were (json.Marshal would escape them as
// \u0026 and compact them, changing the config's digest for nothing).
func TestConfigEditsKeepBytes(t *testing.T) {
	raw := `{"author":"Tom & Jerry <tj@example.com>","config":{"Env":["A=a&b"],` +
		`"Labels": {"x": "<y>"}},"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	c, err := ParseConfig([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.Bytes(); err != nil || string(out) != raw {
		t.Fatalf("unedited config re-encoded as %s (%v), want %s", out, err, raw)
	}
	if err := c.SetRuntime("Cmd", []string{"sh", "-c", "a && b > c"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("comment", "x & y"); err != nil {
		t.Fatal(err)
	}
	out, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"author":"Tom & Jerry <tj@example.com>","comment":"x & y","config":{"Cmd":["sh","-c","a && b > c"],` +
		`"Env":["A=a&b"],"Labels":{"x": "<y>"}},"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`
	if string(out) != want {
		t.Fatalf("edited config:\n%s\nwant\n%s", out, want)
	}
}

func TestTagUntag(t *testing.T) {
	l := initTest(t)
	a := addImage(t, l, "linux/amd64", "a")
	b := addImage(t, l, "linux/amd64", "b")
	if err := l.Tag(a, "v1", "docker.io/library/app:1"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); !slices.Equal(got, []string{"docker.io/library/app:1", "v1"}) {
		t.Fatalf("names %v", got)
	}
	// The name moves to b; a keeps its other name.
	if err := l.Tag(b, "v1"); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Resolve("v1"); err != nil || d.Digest != b.Digest {
		t.Fatalf("v1 did not move: %v %v", d.Digest, err)
	}
	if d, err := l.Resolve("docker.io/library/app:1"); err != nil || d.Digest != a.Digest {
		t.Fatalf("other name changed: %v", err)
	}
	// Untagged entries are listed by digest and replaced by a name.
	c := addImage(t, l, "linux/arm64", "c")
	if err := l.AddUntagged(c); err != nil {
		t.Fatal(err)
	}
	if err := l.AddUntagged(c); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); !slices.Equal(got, []string{"docker.io/library/app:1", "v1", "@" + c.Digest.String()}) {
		t.Fatalf("names %v", got)
	}
	if d, err := l.Resolve("@" + c.Digest.String()); err != nil || d.Digest != c.Digest {
		t.Fatalf("resolve by digest: %v", err)
	}
	// An untagged image is a gc root.
	if res, err := l.GC(context.Background()); err != nil || len(res.Removed) != 0 {
		t.Fatalf("gc removed %v: %v", res, err)
	}
	if err := l.Tag(c, "c"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); !slices.Equal(got, []string{"c", "docker.io/library/app:1", "v1"}) {
		t.Fatalf("untagged entry not replaced: %v", got)
	}
	// Untag.
	if err := l.Untag("docker.io/library/app:1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Untag("docker.io/library/app:1"); !errors.Is(err, ErrRefNotFound) {
		t.Fatalf("second untag: %v", err)
	}
	if err := l.Tag(b, "v2"); err != nil {
		t.Fatal(err)
	}
	if err := l.Untag("@" + b.Digest.String()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, l); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("untag by digest left %v", got)
	}
	res, err := l.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// a and b: manifest, config, layer each.
	if len(res.Removed) != 6 {
		t.Errorf("gc removed %d blobs, want 6", len(res.Removed))
	}
	mustFsckClean(t, l)
	if _, err := l.Image("c", nil); err != nil {
		t.Fatal(err)
	}
	// Refused tags.
	for _, bad := range []string{"", "@" + c.Digest.String(), "a b", "x/", ":x"} {
		if err := l.Tag(c, bad); err == nil {
			t.Errorf("Tag(%q) accepted", bad)
		}
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("none"), Size: 4}
	if err := l.Tag(missing, "gone"); err == nil {
		t.Error("tagged a manifest that is not in the layout")
	}
}

func TestResolve(t *testing.T) {
	l := initTest(t)
	if _, err := l.Resolve(""); !errors.Is(err, ErrRefNotFound) {
		t.Fatalf("empty layout: %v", err)
	}
	a := addImage(t, l, "linux/amd64", "a")
	l.Tag(a, "v1", "v1.0")
	if d, err := l.Resolve(""); err != nil || d.Digest != a.Digest {
		t.Fatalf("only image under two names: %v", err)
	}
	b := addImage(t, l, "linux/arm64", "b")
	inner := addImage(t, l, "linux/s390x", "inner")
	ix := addIndex(t, l, b, inner)
	ix.Annotations = map[string]string{AnnotationImageName: "docker.io/library/multi:latest"}
	if err := l.AddUntagged(ix); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref  string
		want digest.Digest
		err  error
	}{
		{"", "", ErrAmbiguous},
		{"v1", a.Digest, nil},
		{"v1.0", a.Digest, nil},
		{"docker.io/library/multi:latest", ix.Digest, nil},
		{"@" + ix.Digest.String(), ix.Digest, nil},
		{"@" + inner.Digest.String(), inner.Digest, nil},
		{"@" + digest.FromString("nothing").String(), "", ErrRefNotFound},
		{"v2", "", ErrRefNotFound},
		{"bad ref", "", ErrInvalidRef},
		{"@sha256:short", "", ErrInvalidRef},
	}
	for _, tt := range tests {
		d, err := l.Resolve(tt.ref)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Resolve(%q): %v, want %v", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil || d.Digest != tt.want {
			t.Errorf("Resolve(%q) = %s %v, want %s", tt.ref, d.Digest, err, tt.want)
		}
	}
	// A config's digest is not an image.
	img, _ := l.ReadImage(a)
	if _, err := l.Resolve("@" + img.Manifest.Config.Digest.String()); !errors.Is(err, ErrRefNotFound) {
		t.Errorf("config digest resolved: %v", err)
	}
}

// putRaw stores raw JSON and returns a descriptor of media type mt.
func putRaw(t testing.TB, l *Layout, mt string, v any) ocispec.Descriptor {
	t.Helper()
	d, err := l.PutJSON(mt, v)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDockerMediaTypes(t *testing.T) {
	l := initTest(t)
	layer, _ := l.PutBytes(MediaTypeDockerLayerGzip, []byte("docker layer"))
	cfg := putRaw(t, l, MediaTypeDockerConfig, map[string]any{
		"architecture": "arm64", "variant": "v8", "os": "linux",
		"config": map[string]any{"Cmd": []string{"true"}, "Healthcheck": map[string]any{"Test": []string{"NONE"}}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digest.FromString("x").String()}},
	})
	man := putRaw(t, l, MediaTypeDockerManifest, map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeDockerManifest, "config": cfg, "layers": []any{layer},
	})
	man.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	list := putRaw(t, l, MediaTypeDockerManifestList, map[string]any{
		"schemaVersion": 2, "mediaType": MediaTypeDockerManifestList, "manifests": []any{man},
	})
	if err := l.Tag(list, "docker"); err != nil {
		t.Fatal(err)
	}
	p := mustPlatform(t, "linux/arm64")
	img, err := l.Image("docker", &p)
	if err != nil {
		t.Fatal(err)
	}
	if img.Descriptor.Digest != man.Digest || img.Descriptor.MediaType != MediaTypeDockerManifest ||
		img.Config.Config.Cmd[0] != "true" || len(img.Manifest.Layers) != 1 {
		t.Fatalf("docker image read wrong: %+v", img.Descriptor)
	}
	seen := 0
	if err := l.Walk(list, func(ocispec.Descriptor, []byte) error { seen++; return nil }); err != nil || seen != 4 {
		t.Fatalf("walk saw %d: %v", seen, err)
	}
	ents, _ := l.List()
	if len(ents) != 1 || !slices.Equal(ents[0].Platforms, []string{"linux/arm64/v8"}) {
		t.Errorf("list: %+v", ents)
	}
	mustFsckClean(t, l)
	if res, err := l.GC(context.Background()); err != nil || len(res.Removed) != 0 {
		t.Fatalf("gc removed %v: %v", res, err)
	}
}

// Descriptors without a media type are followed by their content, so gc
// never takes a manifest for a leaf and sweeps what it references.
func TestUntypedDescriptorsFollowed(t *testing.T) {
	l := initTest(t)
	md := addImage(t, l, "linux/amd64", "layer")
	md.MediaType = ""
	md.Platform = nil
	ix := putRaw(t, l, "", map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	if err := l.Tag(ix, "untyped"); err != nil {
		t.Fatal(err)
	}
	if res, err := l.GC(context.Background()); err != nil || len(res.Removed) != 0 {
		t.Fatalf("gc removed %v: %v", res, err)
	}
	p := mustPlatform(t, "linux/amd64")
	if _, err := l.Image("untyped", &p); err != nil {
		t.Fatal(err)
	}
	mustFsckClean(t, l)
}

func TestPlatformSelection(t *testing.T) {
	l := initTest(t)
	amd := addImage(t, l, "linux/amd64", "amd")
	arm64 := addImage(t, l, "linux/arm64/v8", "arm64")
	arm7 := addImage(t, l, "linux/arm/v7", "arm7")
	s390 := addImage(t, l, "linux/s390x", "s390")
	ppc := addImage(t, l, "linux/ppc64le", "ppc")
	arm64.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	ppc.Platform = nil // taken from the config
	nested := addIndex(t, l, s390)
	attest := addImage(t, l, "linux/amd64", "attestation")
	attest.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	top := addIndex(t, l, amd, arm64, arm7, nested, ppc, attest)
	l.Tag(top, "multi")
	// An index whose arm64 entry has no variant.
	bare := addImage(t, l, "linux/arm64", "bare")
	bare.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	bareIdx := addIndex(t, l, bare)
	l.Tag(bareIdx, "bare")

	tests := []struct {
		ref, platform string
		want          digest.Digest
		err           error
	}{
		{"multi", "linux/amd64", amd.Digest, nil},
		{"multi", "linux/arm64", arm64.Digest, nil},
		{"multi", "linux/arm64/v8", arm64.Digest, nil},
		{"multi", "linux/aarch64", arm64.Digest, nil},
		{"multi", "linux/arm/v7", arm7.Digest, nil},
		{"multi", "linux/arm", arm7.Digest, nil},
		{"multi", "linux/s390x", s390.Digest, nil},
		{"multi", "linux/ppc64le", ppc.Digest, nil},
		{"multi", "windows/amd64", "", ErrNoPlatform},
		{"multi", "linux/riscv64", "", ErrNoPlatform},
		{"bare", "linux/arm64/v8", bare.Digest, nil},
		{"bare", "linux/arm64", bare.Digest, nil},
	}
	for _, tt := range tests {
		t.Run(tt.ref+" "+tt.platform, func(t *testing.T) {
			p := mustPlatform(t, tt.platform)
			img, err := l.Image(tt.ref, &p)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("got %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || img.Descriptor.Digest != tt.want {
				t.Fatalf("got %v %v, want %s", img, err, tt.want)
			}
		})
	}
	// The host platform by default (this machine runs linux/amd64 or the
	// arm64 entry).
	img, err := l.Image("multi", nil)
	if err != nil {
		t.Fatal(err)
	}
	host := mustPlatform(t, "")
	if img.Config.Architecture != host.Architecture {
		t.Errorf("default platform picked %s, host is %s", img.Config.Architecture, host.Architecture)
	}
	ps, err := l.Platforms(top)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, formatPlatform(p))
	}
	// ppc64le's platform comes from its config; the attestation is hidden.
	if !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/s390x", "linux/ppc64le"}) {
		t.Errorf("platforms %v", got)
	}
	mustFsckClean(t, l)
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{"linux/amd64", "linux/amd64", false},
		{"linux/x86_64", "linux/amd64", false},
		{"linux/arm64", "linux/arm64", false},
		{"linux/arm64/v8", "linux/arm64", false},
		{"linux/aarch64", "linux/arm64", false},
		{"linux/arm", "linux/arm/v7", false},
		{"linux/arm/v6", "linux/arm/v6", false},
		{"linux/armhf", "linux/arm/v7", false},
		{"windows/amd64", "windows/amd64", false},
		{"arm64", "linux/arm64", false},
		{"linux/", "", true},
		{"a/b/c/d", "", true},
		{"linux/amd64!", "", true},
	}
	for _, tt := range tests {
		p, err := ParsePlatform(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParsePlatform(%q) = %v, want an error", tt.in, p)
			}
			continue
		}
		if err != nil || formatPlatform(p) != tt.want {
			t.Errorf("ParsePlatform(%q) = %s %v, want %s", tt.in, formatPlatform(p), err, tt.want)
		}
	}
	if p, err := ParsePlatform(""); err != nil || p.OS == "" || p.Architecture == "" {
		t.Errorf("host platform: %v %v", p, err)
	}
}

func TestSplitRef(t *testing.T) {
	sha := digest.FromString("x").String()
	tests := []struct {
		in       string
		dir, ref string
		bad      bool
	}{
		{"dir", "dir", "", false},
		{"dir:v1", "dir", "v1", false},
		{"./a/b:1.0", "./a/b", "1.0", false},
		{"/abs/dir:latest", "/abs/dir", "latest", false},
		{"dir:docker.io/library/debian:12", "dir", "docker.io/library/debian:12", false},
		{"dir:localhost:5000/x/y:tag", "dir", "localhost:5000/x/y:tag", false},
		{"dir:name@" + sha, "dir", "name@" + sha, false},
		{"dir:@" + sha, "dir", "@" + sha, false},
		{"dir:v1_beta-2", "dir", "v1_beta-2", false},
		// Names other tools may have written stay reachable.
		{"dir:docker.io/x/foo__bar:_tag", "dir", "docker.io/x/foo__bar:_tag", false},
		{"dir:", "dir", "", false},
		{":v1", "", "", true},
		{"", "", "", true},
		{"dir:a b", "", "", true},
		{"dir:a,b", "", "", true},
		{"dir:a//b", "", "", true},
		{"dir:x/", "", "", true},
		{"dir:@sha256:abc", "", "", true},
		{"dir:@" + sha + "x", "", "", true},
		{"dir:a\x00b", "", "", true},
		{"dir:a\tb", "", "", true},
		{"dir:ümlaut", "", "", true},
		{"dir:" + strings.Repeat("a", 5000), "", "", true},
	}
	for _, tt := range tests {
		dir, ref, err := SplitRef(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("SplitRef(%q) = %q %q, want an error", tt.in, dir, ref)
			} else if !errors.Is(err, ErrInvalidRef) {
				t.Errorf("SplitRef(%q): %v is not ErrInvalidRef", tt.in, err)
			}
			continue
		}
		if err != nil || dir != tt.dir || ref != tt.ref {
			t.Errorf("SplitRef(%q) = %q %q %v, want %q %q", tt.in, dir, ref, err, tt.dir, tt.ref)
		}
	}
	if d, ok := IsDigestRef("@" + sha); !ok || d.String() != sha {
		t.Error("IsDigestRef")
	}
	if _, ok := IsDigestRef("v1"); ok {
		t.Error("IsDigestRef(v1)")
	}
}

// ValidateRef follows the image-spec grammar for ref.name, as skopeo does.
func TestValidateRef(t *testing.T) {
	sha := digest.FromString("x").String()
	good := []string{
		"v1", "1.0", "latest", "V1.0-rc.1", "a_b", "a--b", "x+y", "a@b", "3.9-slim",
		"docker.io/library/debian:12", "localhost:5000/x/y:tag", "name@" + sha, "@" + sha,
		"example.com/strata/s:1", strings.Repeat("a", 4096),
	}
	bad := []string{
		"", "a b", "a//b", "x/", "/x", ".x", "x.", "-x", "_x", "a__b", "a---b", "a.-b", "a=b",
		"a\x00", "ümlaut", "@sha256:abc", "@" + sha + "/x", strings.Repeat("a", 4097),
	}
	for _, r := range good {
		if err := ValidateRef(r); err != nil {
			t.Errorf("ValidateRef(%q): %v", r, err)
		}
	}
	for _, r := range bad {
		if err := ValidateRef(r); !errors.Is(err, ErrInvalidRef) {
			t.Errorf("ValidateRef(%q) = %v, want ErrInvalidRef", r, err)
		}
	}
}

// A name another tool wrote that strata would not write can still be
// found and removed; strata refuses to write it.
func TestLenientNamesFromOtherTools(t *testing.T) {
	l := initTest(t)
	md := addImage(t, l, "linux/amd64", "x")
	err := l.UpdateIndex(func(idx *Index) error {
		d := md
		d.Annotations = map[string]string{AnnotationRefName: "docker.io/x/foo__bar:_tag"}
		idx.Manifests = append(idx.Manifests, d)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := l.Resolve("docker.io/x/foo__bar:_tag"); err != nil || d.Digest != md.Digest {
		t.Fatalf("resolve: %v", err)
	}
	if err := l.Tag(md, "foo__bar"); !errors.Is(err, ErrInvalidRef) {
		t.Errorf("Tag with a name outside the grammar: %v", err)
	}
	if err := l.Untag("docker.io/x/foo__bar:_tag"); err != nil {
		t.Fatal(err)
	}
}

func TestParseRejectsBadDocuments(t *testing.T) {
	good := digest.FromString("x").String()
	tests := []struct {
		name  string
		parse func([]byte) error
		doc   string
	}{
		{"index not json", func(b []byte) error { _, err := ParseIndex(b); return err }, `{`},
		{"index schema 1", func(b []byte) error { _, err := ParseIndex(b); return err }, `{"schemaVersion":1}`},
		{"index bad digest", func(b []byte) error { _, err := ParseIndex(b); return err }, `{"schemaVersion":2,"manifests":[{"digest":"sha256:zz","size":1}]}`},
		{"index negative size", func(b []byte) error { _, err := ParseIndex(b); return err }, `{"schemaVersion":2,"manifests":[{"digest":"` + good + `","size":-1}]}`},
		{"manifest schema 1", func(b []byte) error { _, err := ParseManifest(b); return err }, `{"schemaVersion":1,"fsLayers":[]}`},
		{"manifest is an index", func(b []byte) error { _, err := ParseManifest(b); return err }, `{"schemaVersion":2,"mediaType":"` + ocispec.MediaTypeImageIndex + `"}`},
		{"manifest no config", func(b []byte) error { _, err := ParseManifest(b); return err }, `{"schemaVersion":2,"layers":[]}`},
		{"manifest bad layer", func(b []byte) error { _, err := ParseManifest(b); return err }, `{"schemaVersion":2,"config":{"digest":"` + good + `","size":1},"layers":[{"digest":"md5:x"}]}`},
		{"config bad diff_id", func(b []byte) error { _, err := ParseImageConfig(b); return err }, `{"rootfs":{"diff_ids":["nope"]}}`},
		{"config not object", func(b []byte) error { _, err := ParseImageConfig(b); return err }, `[1]`},
	}
	for _, tt := range tests {
		if err := tt.parse([]byte(tt.doc)); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestIndexKeepsUnknownFieldsThroughMarshal(t *testing.T) {
	in := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"zz":{"a":1},"aa":[true]}`
	idx, err := ParseIndex([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	json.Unmarshal(out, &got)
	if string(got["zz"]) != `{"a":1}` || string(got["aa"]) != `[true]` {
		t.Errorf("unknown fields lost: %s", out)
	}
}

func TestPutImageChecks(t *testing.T) {
	l := initTest(t)
	cfg := NewConfig(mustPlatform(t, "linux/amd64"))
	cfg.AppendLayer(digest.FromString("a"))
	if _, err := l.PutImage(cfg, nil, nil); err == nil {
		t.Error("PutImage accepted a config with more diff_ids than layers")
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("a"), Size: 1}
	if _, err := l.PutImage(cfg, []ocispec.Descriptor{missing}, nil); err == nil {
		t.Error("PutImage accepted a layer that is not in the layout")
	}
	md := addImage(t, l, "linux/riscv64", "one", "two")
	if md.Platform == nil || md.Platform.Architecture != "riscv64" {
		t.Errorf("manifest descriptor platform: %+v", md.Platform)
	}
	size, err := l.totalSize(md)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := l.ReadImage(md)
	if want := md.Size + img.Manifest.Config.Size + 6; size != want {
		t.Errorf("totalSize %d, want %d", size, want)
	}
}

func TestGCRemovesUnreachableAndStale(t *testing.T) {
	l := initTest(t)
	keep := addImage(t, l, "linux/amd64", "keep")
	inner := addImage(t, l, "linux/arm64", "inner")
	ix := addIndex(t, l, addIndex(t, l, inner))
	l.Tag(keep, "keep")
	l.Tag(ix, "nested")
	drop := addImage(t, l, "linux/amd64", "drop")
	loose, _ := l.PutBytes("application/octet-stream", []byte("loose"))
	// What killed processes leave behind.
	staging := l.Blobs().StagingDir()
	os.WriteFile(filepath.Join(staging, "ingest-dead"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(l.Dir(), ".index.json.tmp-42"), []byte("{"), 0o644)
	// A blob this Layout is writing right now survives: its staging file is
	// locked.
	w, err := l.Blobs().NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("in flight"))

	res, err := l.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	removed := map[digest.Digest]bool{}
	for _, d := range res.Removed {
		removed[d] = true
	}
	if !removed[drop.Digest] || !removed[loose.Digest] || len(res.Removed) != 4 {
		t.Errorf("removed %v", res.Removed)
	}
	if res.Staging != 2 {
		t.Errorf("removed %d stale files, want 2", res.Staging)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), ".index.json.tmp-42")); err == nil {
		t.Error("index temp file kept")
	}
	if _, _, err := w.Commit(); err != nil {
		t.Fatalf("in-flight write broken by gc: %v", err)
	}
	for _, ref := range []string{"keep", "nested"} {
		p := mustPlatform(t, map[string]string{"keep": "linux/amd64", "nested": "linux/arm64"}[ref])
		if _, err := l.Image(ref, &p); err != nil {
			t.Errorf("%s after gc: %v", ref, err)
		}
	}
	mustFsckClean(t, l)
}

// When a reachable manifest cannot be read, gc removes nothing.
func TestGCRemovesNothingWhenGraphUnreadable(t *testing.T) {
	l := initTest(t)
	md := addImage(t, l, "linux/amd64", "x")
	l.Tag(md, "x")
	loose, _ := l.PutBytes("application/octet-stream", []byte("loose"))
	flipBlob(t, l, md.Digest)
	if _, err := l.GC(context.Background()); err == nil {
		t.Fatal("gc ran over a corrupt manifest")
	}
	if !l.Blobs().Has(loose.Digest, -1) {
		t.Error("gc removed a blob although it failed")
	}
}

func TestFsckReportsEachProblem(t *testing.T) {
	l := initTest(t)
	a := addImage(t, l, "linux/amd64", "a1", "a2")
	b := addImage(t, l, "linux/amd64", "b1")
	l.Tag(a, "a")
	l.Tag(b, "b")
	// A manifest whose config lists fewer diff_ids than it has layers.
	c := addImage(t, l, "linux/amd64", "c1")
	ci, _ := l.ReadImage(c)
	extra, _ := l.PutBytes(ocispec.MediaTypeImageLayer, []byte("extra"))
	ci.Manifest.Layers = append(ci.Manifest.Layers, extra)
	c2 := putRaw(t, l, ocispec.MediaTypeImageManifest, ci.Manifest)
	l.Tag(c2, "c")
	// A descriptor with the wrong size and one for a missing blob.
	wrong := b
	wrong.Size++
	absent := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("absent"), Size: 10}
	err := l.UpdateIndex(func(idx *Index) error {
		wrong.Annotations = map[string]string{AnnotationRefName: "wrong"}
		absent.Annotations = map[string]string{AnnotationRefName: "absent"}
		idx.Manifests = append(idx.Manifests, wrong, absent)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ai, _ := l.ReadImage(a)
	os.Remove(mustPath(t, l, ai.Manifest.Layers[1].Digest))
	os.WriteFile(filepath.Join(l.Blobs().Dir(), "sha256", "junk"), nil, 0o644)

	probs, err := l.Fsck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range probs {
		lines = append(lines, p.String())
	}
	text := strings.Join(lines, "\n")
	for _, want := range []string{
		ai.Manifest.Layers[1].Digest.String() + " is missing",
		"has 2 layers but its config lists 1 diff_ids",
		"(wrong): blob " + b.Digest.String() + " has",
		"(absent): blob " + absent.Digest.String() + " is missing",
		"junk",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("fsck output lacks %q:\n%s", want, text)
		}
	}
	if len(probs) != 5 {
		t.Errorf("%d problems, want 5:\n%s", len(probs), text)
	}
	for _, l := range lines {
		if strings.Contains(l, "\n") {
			t.Errorf("problem spans lines: %q", l)
		}
	}
}

func mustPath(t testing.TB, l *Layout, d digest.Digest) string {
	t.Helper()
	p, err := l.Blobs().Path(d)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// flipBlob changes one byte in the middle of a blob.
func flipBlob(t testing.TB, l *Layout, d digest.Digest) {
	t.Helper()
	p := mustPath(t, l, d)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// A flipped byte in any blob is reported by fsck and refused by every
// read that touches the blob.
func TestCorruptionRefused(t *testing.T) {
	for _, which := range []string{"layer", "config", "manifest", "index"} {
		t.Run(which, func(t *testing.T) {
			l := initTest(t)
			md := addImage(t, l, "linux/amd64", "some layer content")
			ix := addIndex(t, l, md)
			l.Tag(ix, "img")
			img, _ := l.ReadImage(md)
			target := map[string]ocispec.Descriptor{
				"layer": img.Manifest.Layers[0], "config": img.Manifest.Config, "manifest": md, "index": ix,
			}[which]
			flipBlob(t, l, target.Digest)

			probs, err := l.Fsck(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != 1 || !strings.Contains(probs[0].String(), target.Digest.String()) ||
				!strings.Contains(probs[0].Err, "digest mismatch") {
				t.Errorf("fsck: %v", probs)
			}
			r, err := l.Blobs().Open(target.Digest, target.Size)
			if err != nil {
				t.Fatal(err)
			}
			if err := readToEnd(r); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Errorf("Open+read: %v", err)
			}
			r.Close()
			if _, err := l.Blobs().ReadAll(target.Digest, target.Size, 1<<20); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Errorf("ReadAll: %v", err)
			}
			if _, err := l.ReadBlob(target, 1<<20); !errors.Is(err, blob.ErrDigestMismatch) {
				t.Errorf("ReadBlob: %v", err)
			}
			p := mustPlatform(t, "linux/amd64")
			_, imgErr := l.Image("img", &p)
			walkErr := l.Walk(ix, func(ocispec.Descriptor, []byte) error { return nil })
			switch which {
			case "layer":
				// Neither reads layer content.
				if imgErr != nil || walkErr != nil {
					t.Errorf("Image %v, Walk %v", imgErr, walkErr)
				}
			case "config":
				if !errors.Is(imgErr, blob.ErrDigestMismatch) {
					t.Errorf("Image: %v", imgErr)
				}
				if _, err := l.ReadImage(md); !errors.Is(err, blob.ErrDigestMismatch) {
					t.Errorf("ReadImage: %v", err)
				}
			default:
				if !errors.Is(imgErr, blob.ErrDigestMismatch) || !errors.Is(walkErr, blob.ErrDigestMismatch) {
					t.Errorf("Image %v, Walk %v", imgErr, walkErr)
				}
				if which == "manifest" {
					if _, err := l.ReadImage(md); !errors.Is(err, blob.ErrDigestMismatch) {
						t.Errorf("ReadImage: %v", err)
					}
				}
			}
			if _, err := l.totalSize(ix); which != "layer" && which != "config" && err == nil {
				t.Error("totalSize read a corrupt blob")
			}
		})
	}
}

func readToEnd(r interface{ Read([]byte) (int, error) }) error {
	buf := make([]byte, 4096)
	for {
		_, err := r.Read(buf)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func TestSmoke(t *testing.T) {
	l := initTest(t)
	md := addImage(t, l, "linux/amd64")
	if err := l.Tag(md, "v1", "docker.io/library/x:1"); err != nil {
		t.Fatal(err)
	}
	img, err := l.Image("v1", nil)
	if err != nil || img.Descriptor.Digest != md.Digest {
		t.Fatalf("image: %v", err)
	}
	if got := names(t, l); len(got) != 2 {
		t.Fatal(got)
	}
	mustFsckClean(t, l)
	l.Untag("v1")
	l.Untag("docker.io/library/x:1")
	res, err := l.GC(context.Background())
	if err != nil || len(res.Removed) != 2 {
		t.Fatal(res, err)
	}
	if fmt.Sprint(names(t, l)) != "[]" {
		t.Fatal("not empty")
	}
}

// Documents that do not parse are problems fsck names, not errors that
// stop it.
func TestFsckUnparsableDocuments(t *testing.T) {
	tests := []struct {
		name   string
		damage func(t *testing.T, l *Layout) string
	}{
		{"index.json", func(t *testing.T, l *Layout) string {
			os.WriteFile(filepath.Join(l.Dir(), IndexFile), []byte("{not json"), 0o644)
			return IndexFile
		}},
		{"manifest", func(t *testing.T, l *Layout) string {
			d, _ := l.PutBytes(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"config":"nope"}`))
			l.Tag(d, "bad")
			return "(bad)"
		}},
		{"nested index", func(t *testing.T, l *Layout) string {
			d, _ := l.PutBytes(ocispec.MediaTypeImageIndex, []byte(`{"schemaVersion":3}`))
			l.Tag(addIndex(t, l, d), "outer")
			return "index "
		}},
		{"config", func(t *testing.T, l *Layout) string {
			cfg, _ := l.PutBytes(ocispec.MediaTypeImageConfig, []byte(`{"rootfs":{"diff_ids":[7]}}`))
			m := map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []any{}}
			l.Tag(putRaw(t, l, ocispec.MediaTypeImageManifest, m), "badcfg")
			return "config " + cfg.Digest.String()
		}},
		{"directory in blobs", func(t *testing.T, l *Layout) string {
			d := digest.FromString("dir")
			os.MkdirAll(filepath.Join(l.Blobs().Dir(), "sha256", d.Encoded()), 0o755)
			return "not a regular file"
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := initTest(t)
			good := addImage(t, l, "linux/amd64", "good")
			l.Tag(good, "good")
			want := tt.damage(t, l)
			probs, err := l.Fsck(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(probs) != 1 || !strings.Contains(probs[0].String(), want) {
				t.Fatalf("want one problem mentioning %q, got %v", want, probs)
			}
		})
	}
}

func FuzzParseInventory(f *testing.F) {
	f.Add([]byte(`{"mediaType":"` + MediaTypeInventory + `","blobs":{"sha256:` + strings.Repeat("a", 64) + `":3},"names":{"x":"sha256:` + strings.Repeat("b", 64) + `"}}`))
	f.Add([]byte(`{"mediaType":"x"}`))
	f.Add([]byte(`{"mediaType":"` + MediaTypeInventory + `","blobs":{"sha256:zz":-1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		inv, err := ParseInventory(b)
		if err != nil {
			return
		}
		for d, s := range inv.Blobs {
			if d.Validate() != nil || s < 0 || !inv.Has(d, s) {
				t.Fatalf("accepted %q (%d)", d, s)
			}
		}
	})
}
