package mutate_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/snapshot/layertest"
)

var (
	amd64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
)

// platformLayers are three small layers marked with the platform's name.
func platformLayers(name string) [][]byte {
	return [][]byte{
		layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/os-release", "ID="+name+"\n", 0o644)),
		layertest.Tar(layertest.Dir("usr", 0o755), layertest.Dir("usr/bin", 0o755), layertest.File("usr/bin/tool", "#!/bin/sh\necho "+name+"\n", 0o755)),
		layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/motd", name+" motd\n", 0o644), layertest.Whiteout("etc/os-release")),
	}
}

// fixture is a layout holding a two-platform image named "v1".
type fixture struct {
	dir       string
	l         *layout.Layout
	index     ocispec.Descriptor
	manifests []ocispec.Descriptor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	idx, ms, err := layertest.BuildIndex(dir, "v1",
		layertest.PlatformImage{Platform: amd64, Layers: platformLayers("amd64"), Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/bin", "A=1"}, Labels: map[string]string{"keep": "yes", "drop": "me"}},
		layertest.PlatformImage{Platform: arm64, Layers: platformLayers("arm64"), Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/bin", "A=1"}, Labels: map[string]string{"keep": "yes", "drop": "me"}},
	)
	layertest.Must(t, err)
	l, err := layout.Open(dir)
	layertest.Must(t, err)
	t.Cleanup(func() { l.Close() })
	return &fixture{dir: dir, l: l, index: idx, manifests: ms}
}

func (f *fixture) image(t *testing.T, root ocispec.Descriptor, p ocispec.Platform) *layout.Image {
	t.Helper()
	md, err := f.l.SelectManifest(root, &p)
	layertest.Must(t, err)
	img, err := f.l.ReadImage(md)
	layertest.Must(t, err)
	return img
}

func ptr[T any](v T) *T { return &v }

func TestMutateEveryPlatform(t *testing.T) {
	f := newFixture(t)
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	ch := mutate.Changes{
		Dockerfile:       []string{`EXPOSE 8080`, `STOPSIGNAL SIGTERM`},
		Entrypoint:       &[]string{"/usr/bin/tool"},
		Env:              []mutate.Setting{{Key: "A", Value: "2"}, {Key: "B", Value: "$A"}, {Key: "PATH", Remove: true}},
		Labels:           []mutate.Setting{{Key: "new", Value: "label"}, {Key: "drop", Remove: true}},
		User:             ptr("1000:1000"),
		WorkingDir:       ptr("srv"),
		Created:          &created,
		Annotations:      []mutate.Setting{{Key: "org.example.m", Value: "1"}},
		IndexAnnotations: []mutate.Setting{{Key: "org.example.i", Value: "2"}},
	}
	res, err := mutate.Mutate(context.Background(), f.l, f.index, ch, nil)
	layertest.Must(t, err)
	if len(res.Images) != 2 {
		t.Fatalf("changed %d images, want 2", len(res.Images))
	}
	if res.Root.MediaType != ocispec.MediaTypeImageIndex || res.Root.Digest == f.index.Digest {
		t.Fatalf("root %+v: want a new index", res.Root)
	}
	idx, err := f.l.ReadIndex(res.Root)
	layertest.Must(t, err)
	if idx.Annotations["org.example.i"] != "2" {
		t.Errorf("index annotations %v", idx.Annotations)
	}
	for i, p := range []ocispec.Platform{amd64, arm64} {
		if got := idx.Manifests[i].Platform; got == nil || got.Architecture != p.Architecture || got.Variant != p.Variant {
			t.Errorf("index entry %d platform %+v, want %+v", i, got, p)
		}
		old := f.image(t, f.index, p)
		img := f.image(t, res.Root, p)
		if !reflect.DeepEqual(img.Manifest.Layers, old.Manifest.Layers) {
			t.Errorf("%s: layers changed", p.Architecture)
		}
		if img.Manifest.Annotations["org.example.m"] != "1" {
			t.Errorf("%s: manifest annotations %v", p.Architecture, img.Manifest.Annotations)
		}
		c := img.Config.Config
		if !slices.Equal(c.Entrypoint, []string{"/usr/bin/tool"}) || c.Cmd != nil {
			t.Errorf("%s: entrypoint %q cmd %q: want the entrypoint and no cmd", p.Architecture, c.Entrypoint, c.Cmd)
		}
		if !slices.Equal(c.Env, []string{"A=2", "B=$A"}) {
			t.Errorf("%s: env %q", p.Architecture, c.Env)
		}
		if !reflect.DeepEqual(c.Labels, map[string]string{"keep": "yes", "new": "label"}) {
			t.Errorf("%s: labels %v", p.Architecture, c.Labels)
		}
		if c.User != "1000:1000" || c.WorkingDir != "/srv" || c.StopSignal != "SIGTERM" {
			t.Errorf("%s: user %q workdir %q stopsignal %q", p.Architecture, c.User, c.WorkingDir, c.StopSignal)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("%s: exposed %v", p.Architecture, c.ExposedPorts)
		}
		if img.Config.Created == nil || !img.Config.Created.Equal(created) {
			t.Errorf("%s: created %v", p.Architecture, img.Config.Created)
		}
		if !slices.Equal(img.Config.RootFS.DiffIDs, old.Config.RootFS.DiffIDs) || !reflect.DeepEqual(img.Config.History, old.Config.History) {
			t.Errorf("%s: rootfs or history changed", p.Architecture)
		}
	}
	// The old image is untouched and still whole.
	layertest.Must(t, f.l.VerifyImage(context.Background(), f.index, layout.VerifyOptions{}))
	layertest.Must(t, f.l.VerifyImage(context.Background(), res.Root, layout.VerifyOptions{DiffIDs: true}))
}

func TestMutateOnePlatform(t *testing.T) {
	f := newFixture(t)
	res, err := mutate.Mutate(context.Background(), f.l, f.index, mutate.Changes{Labels: []mutate.Setting{{Key: "only", Value: "arm"}}}, []ocispec.Platform{{OS: "linux", Architecture: "arm64"}})
	layertest.Must(t, err)
	if len(res.Images) != 1 || res.Images[0].Platform.Architecture != "arm64" {
		t.Fatalf("changed %+v, want arm64 alone", res.Images)
	}
	idx, err := f.l.ReadIndex(res.Root)
	layertest.Must(t, err)
	if idx.Manifests[0].Digest != f.manifests[0].Digest {
		t.Errorf("amd64 entry changed")
	}
	if idx.Manifests[1].Digest == f.manifests[1].Digest {
		t.Errorf("arm64 entry unchanged")
	}
	if got := f.image(t, res.Root, arm64).Config.Config.Labels["only"]; got != "arm" {
		t.Errorf("arm64 label %q", got)
	}

	_, err = mutate.Mutate(context.Background(), f.l, f.index, mutate.Changes{User: ptr("x")}, []ocispec.Platform{{OS: "linux", Architecture: "s390x"}})
	if !errors.Is(err, layout.ErrNoPlatform) {
		t.Errorf("s390x: got %v, want ErrNoPlatform", err)
	}
}

func TestMutateNoChangeKeepsDigest(t *testing.T) {
	f := newFixture(t)
	// Setting what is already there changes nothing, not even the bytes.
	res, err := mutate.Mutate(context.Background(), f.l, f.index, mutate.Changes{Labels: []mutate.Setting{{Key: "keep", Value: "yes"}}, Env: []mutate.Setting{{Key: "NOPE", Remove: true}}}, nil)
	layertest.Must(t, err)
	if res.Root.Digest != f.index.Digest || len(res.Images) != 0 {
		t.Fatalf("root %s, %d images changed: want the same index", res.Root.Digest, len(res.Images))
	}
	// A manifest annotation alone keeps the config's bytes.
	res, err = mutate.Mutate(context.Background(), f.l, f.index, mutate.Changes{Annotations: []mutate.Setting{{Key: "a", Value: "b"}}}, nil)
	layertest.Must(t, err)
	for _, c := range res.Images {
		o, err := f.l.ReadImage(c.Old)
		layertest.Must(t, err)
		n, err := f.l.ReadImage(c.New)
		layertest.Must(t, err)
		if o.Manifest.Config.Digest != n.Manifest.Config.Digest {
			t.Errorf("%s: config changed for an annotation", c.Platform.Architecture)
		}
	}
}

func TestMutateSingleManifest(t *testing.T) {
	f := newFixture(t)
	res, err := mutate.Mutate(context.Background(), f.l, f.manifests[0], mutate.Changes{Cmd: &[]string{"true"}}, nil)
	layertest.Must(t, err)
	if res.Root.Platform != nil || res.Root.Annotations != nil || !layout.IsManifest(res.Root.MediaType) {
		t.Errorf("root %+v: want a plain manifest descriptor", res.Root)
	}
	img, err := f.l.ReadImage(res.Root)
	layertest.Must(t, err)
	if !slices.Equal(img.Config.Config.Cmd, []string{"true"}) {
		t.Errorf("cmd %q", img.Config.Config.Cmd)
	}
	_, err = mutate.Mutate(context.Background(), f.l, f.manifests[0], mutate.Changes{IndexAnnotations: []mutate.Setting{{Key: "a", Value: "b"}}}, nil)
	if !errors.Is(err, mutate.ErrNotIndex) {
		t.Errorf("index annotation on a manifest: got %v, want ErrNotIndex", err)
	}
	_, err = mutate.Mutate(context.Background(), f.l, f.manifests[0], mutate.Changes{Dockerfile: []string{"RUN true"}}, nil)
	if !errors.Is(err, dockerfile.ErrInvalidChange) {
		t.Errorf("RUN: got %v, want ErrInvalidChange", err)
	}
}

// A nested index, an image listed twice and an attestation manifest: every
// image changes once, the attestation stays, both indexes are rewritten.
func TestRewriteNested(t *testing.T) {
	f := newFixture(t)
	att, err := f.l.PutBytes(ocispec.MediaTypeImageManifest, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`))
	layertest.Must(t, err)
	_, err = f.l.PutBytes(ocispec.MediaTypeImageConfig, []byte("{}"))
	layertest.Must(t, err)
	att.Platform = &ocispec.Platform{OS: "unknown", Architecture: "unknown"}
	att.Annotations = map[string]string{"vnd.docker.reference.type": "attestation-manifest"}
	inner, err := f.l.PutJSON(ocispec.MediaTypeImageIndex, &layout.Index{Index: ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{f.manifests[1], att}}})
	layertest.Must(t, err)
	outer, err := f.l.PutJSON(ocispec.MediaTypeImageIndex, &layout.Index{Index: ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{f.manifests[0], inner, f.manifests[0]}}})
	layertest.Must(t, err)

	calls := 0
	res, err := mutate.Rewrite(context.Background(), f.l, outer, mutate.RewriteOptions{}, func(_ context.Context, img *layout.Image, p ocispec.Platform) (ocispec.Descriptor, error) {
		calls++
		cfg, err := layout.ParseConfig(img.ConfigRaw)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		layertest.Must(t, cfg.SetRuntime("User", "nested"))
		return mutate.PutConfig(f.l, img, cfg)
	})
	layertest.Must(t, err)
	if calls != 2 || len(res.Images) != 2 {
		t.Fatalf("fn called %d times, %d images changed: want 2, 2", calls, len(res.Images))
	}
	o, err := f.l.ReadIndex(res.Root)
	layertest.Must(t, err)
	if o.Manifests[0].Digest != o.Manifests[2].Digest || o.Manifests[0].Digest == f.manifests[0].Digest {
		t.Errorf("outer entries 0 and 2: %s, %s", o.Manifests[0].Digest, o.Manifests[2].Digest)
	}
	if o.Manifests[1].Digest == inner.Digest {
		t.Fatalf("inner index not rewritten")
	}
	in, err := f.l.ReadIndex(o.Manifests[1])
	layertest.Must(t, err)
	if in.Manifests[1].Digest != att.Digest || in.Manifests[1].Annotations["vnd.docker.reference.type"] == "" {
		t.Errorf("attestation entry changed: %+v", in.Manifests[1])
	}
	for _, p := range []ocispec.Platform{amd64, arm64} {
		if u := f.image(t, res.Root, p).Config.Config.User; u != "nested" {
			t.Errorf("%s: user %q", p.Architecture, u)
		}
	}
}

// Docker schema2 images stay Docker schema2.
func TestMutateDockerMediaTypes(t *testing.T) {
	f := newFixture(t)
	old := f.image(t, f.index, amd64)
	m := old.Manifest
	m.MediaType = layout.MediaTypeDockerManifest
	m.Config.MediaType = layout.MediaTypeDockerConfig
	for i := range m.Layers {
		m.Layers[i].MediaType = layout.MediaTypeDockerLayerGzip
	}
	b, err := json.Marshal(m)
	layertest.Must(t, err)
	md, err := f.l.PutBytes(layout.MediaTypeDockerManifest, b)
	layertest.Must(t, err)
	_, err = f.l.PutBytes(layout.MediaTypeDockerConfig, old.ConfigRaw)
	layertest.Must(t, err)
	res, err := mutate.Mutate(context.Background(), f.l, md, mutate.Changes{Cmd: &[]string{"x"}}, nil)
	layertest.Must(t, err)
	img, err := f.l.ReadImage(res.Root)
	layertest.Must(t, err)
	if res.Root.MediaType != layout.MediaTypeDockerManifest || img.Manifest.MediaType != layout.MediaTypeDockerManifest || img.Manifest.Config.MediaType != layout.MediaTypeDockerConfig {
		t.Errorf("media types %s, %s, %s", res.Root.MediaType, img.Manifest.MediaType, img.Manifest.Config.MediaType)
	}
	if img.Manifest.Layers[0].MediaType != layout.MediaTypeDockerLayerGzip {
		t.Errorf("layer type %s", img.Manifest.Layers[0].MediaType)
	}
	// Layers appended to it get Docker types; zstd ones are refused.
	tarball := filepath.Join(t.TempDir(), "l.tar")
	layertest.Must(t, os.WriteFile(tarball, layertest.Tar(layertest.File("f", "f", 0o644)), 0o644))
	app, err := mutate.Append(context.Background(), f.l, res.Root, []mutate.Source{{Path: tarball}}, mutate.AppendOptions{})
	layertest.Must(t, err)
	img, err = f.l.ReadImage(app.Root)
	layertest.Must(t, err)
	if mt := img.Manifest.Layers[3].MediaType; mt != layout.MediaTypeDockerLayerGzip {
		t.Errorf("appended layer type %s", mt)
	}
	_, err = mutate.Append(context.Background(), f.l, res.Root, []mutate.Source{{Path: tarball}}, mutate.AppendOptions{Compression: layout.CompressionZstd})
	if !errors.Is(err, layout.ErrZstdDocker) {
		t.Errorf("zstd into a Docker image: got %v, want ErrZstdDocker", err)
	}
}

func TestMutateCancelled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := mutate.Mutate(ctx, f.l, f.index, mutate.Changes{User: ptr("x")}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestParseSetting(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want mutate.Setting
		bad  bool
	}{
		{in: "a=b", want: mutate.Setting{Key: "a", Value: "b"}},
		{in: "a=", want: mutate.Setting{Key: "a"}},
		{in: "a=b=c", want: mutate.Setting{Key: "a", Value: "b=c"}},
		{in: "a-", want: mutate.Setting{Key: "a", Remove: true}},
		{in: "org.example.x-", want: mutate.Setting{Key: "org.example.x", Remove: true}},
		{in: "a", bad: true},
		{in: "-", bad: true},
		{in: "=b", bad: true},
		{in: "", bad: true},
	} {
		got, err := mutate.ParseSetting(tc.in)
		if tc.bad {
			if !errors.Is(err, mutate.ErrInvalidSetting) {
				t.Errorf("%q: got %+v, %v: want ErrInvalidSetting", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v: want %+v", tc.in, got, err, tc.want)
		}
	}
}
