package archive

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
)

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageConfig is a config for one layer with the given diffID, padded
// with an extra field to at least size bytes.
func imageConfig(t testing.TB, diffID digest.Digest, size int) []byte {
	t.Helper()
	c := map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{diffID}},
	}
	b := mustJSON(t, c)
	if pad := size - len(b) - len(`,"x-pad":""`); pad > 0 {
		c["x-pad"] = strings.Repeat("a", pad)
		b = mustJSON(t, c)
	}
	return b
}

// dialect makes an archive of one image, named hostile:1, from a config
// and a layer file, in one of the dialects Read takes.
type dialect struct {
	name string
	make func(t testing.TB, cfg, layer []byte) []byte
}

var dialects = []dialect{
	{"index.json", func(t testing.TB, cfg, layer []byte) []byte {
		cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
		ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}
		m := mustJSON(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
		md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m)),
			Annotations: map[string]string{layout.AnnotationRefName: "hostile:1"}}
		idx := mustJSON(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
		return archiveOf(t, []lent{
			{name: "oci-layout", body: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
			{name: "index.json", body: idx},
			{name: "blobs/sha256/" + cd.Digest.Encoded(), body: cfg},
			{name: "blobs/sha256/" + ld.Digest.Encoded(), body: layer},
			{name: "blobs/sha256/" + md.Digest.Encoded(), body: m},
		})
	}},
	{"manifest.json", func(t testing.TB, cfg, layer []byte) []byte {
		cfgName := digest.FromBytes(cfg).Encoded() + ".json"
		layerName := strings.Repeat("a", 64) + "/layer.tar"
		return archiveOf(t, []lent{
			{name: cfgName, body: cfg},
			{name: layerName, body: layer},
			{name: "manifest.json", body: mustJSON(t, []map[string]any{{"Config": cfgName, "RepoTags": []string{"hostile:1"}, "Layers": []string{layerName}}})},
		})
	}},
	{"legacy", func(t testing.TB, cfg, layer []byte) []byte {
		// The config's fields go into the v1 JSON, diff_ids included,
		// which the reader must not believe: it works them out itself.
		// (A config that is no JSON object goes in as it is.)
		v1JSON := cfg
		var v1 map[string]any
		if json.Unmarshal(cfg, &v1) == nil && v1 != nil {
			v1["id"] = idTop
			v1JSON = mustJSON(t, v1)
		}
		return archiveOf(t, []lent{
			{name: "repositories", body: mustJSON(t, map[string]map[string]string{"hostile": {"1": idTop}})},
			{name: idTop + "/VERSION", body: []byte("1.0")},
			{name: idTop + "/json", body: v1JSON},
			{name: idTop + "/layer.tar", body: layer},
		})
	}},
}

// TestReadChecksEveryDialect: whatever the dialect, a layer that does
// not match its config's diff_id, a truncated gzip layer (its blob digest
// that of the truncated bytes), a layer that is not a tar and a config
// over layout.MaxConfigSize are refused, and nothing reaches the
// destination. A pre-1.10 archive has no diff_ids of its own: there the
// reader's own, from the layer, must win over what the v1 JSON says.
func TestReadChecksEveryDialect(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	body := make([]byte, 256<<10)
	rng.Read(body) // incompressible: half the gzip stream is half the tar
	good := tarOf(t, "etc/hello", "hello\n", "usr/bin/data", string(body))
	other := tarOf(t, "etc/other", "other\n")
	goodID := digest.FromBytes(good)
	gz := gzipOf(t, good)
	cases := []struct {
		name   string
		cfg    []byte
		layer  []byte
		want   error  // nil: loads
		say    string // in the error
		legacy string // what a pre-1.10 archive gives instead: "" loads with the layer's own diffID
	}{
		{"good", imageConfig(t, goodID, 0), gz, nil, "", ""},
		{"diff_id mismatch", imageConfig(t, digest.FromBytes(other), 0), gz, layout.ErrDiffIDMismatch, "diff_id", ""},
		{"truncated gzip", imageConfig(t, goodID, 0), gz[:len(gz)/2], ErrInvalidArchive, "unexpected EOF", "unexpected EOF"},
		{"not a tar", imageConfig(t, digest.FromBytes(body[:1000]), 0), gzipOf(t, body[:1000]), layout.ErrNotTar, "not a tar", "not a tar"},
		{"config too large", imageConfig(t, goodID, layout.MaxConfigSize+1), gz, blob.ErrTooLarge, "limit", "limit"},
	}
	for _, d := range dialects {
		for _, c := range cases {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				dst, imgs, err := readInto(t, d.make(t, c.cfg, c.layer), ReadOptions{})
				want, say := c.want, c.say
				if d.name == "legacy" && c.want != nil {
					want, say = nil, c.legacy
					if say != "" {
						want = ErrInvalidArchive
					}
				}
				if want != nil {
					if !errors.Is(err, want) || !errors.Is(err, ErrInvalidArchive) || !strings.Contains(err.Error(), say) {
						t.Fatalf("Read: %v; want %v saying %q", err, want, say)
					}
					n := 0
					dst.Blobs().Walk(func(digest.Digest, int64, error) error { n++; return nil })
					if n != 0 {
						t.Fatalf("a refused archive left %d blobs in the destination", n)
					}
					return
				}
				if err != nil {
					t.Fatalf("Read: %v", err)
				}
				img, err := dst.ReadImage(imgs[0].Descriptor)
				if err != nil {
					t.Fatal(err)
				}
				if got := img.Config.RootFS.DiffIDs; len(got) != 1 || got[0] != goodID {
					t.Fatalf("diff_ids %v, want [%s]", got, goodID)
				}
				if err := dst.VerifyImage(t.Context(), imgs[0].Descriptor, layout.VerifyOptions{DiffIDs: true}); err != nil {
					t.Fatalf("the loaded image does not verify: %v", err)
				}
			})
		}
	}
}

// TestReadNamesTheBadEntry: a refused layer is named by its archive entry.
func TestReadNamesTheBadEntry(t *testing.T) {
	good := tarOf(t, "etc/hello", "hello\n")
	b := dialects[1].make(t, imageConfig(t, digest.FromBytes(tarOf(t, "x", "y")), 0), gzipOf(t, good))
	_, _, err := readInto(t, b, ReadOptions{})
	var le *layout.LayerError
	if !errors.As(err, &le) || le.Actual != digest.FromBytes(good) {
		t.Fatalf("Read: %v; want a LayerError with the actual diffID", err)
	}
	if want := fmt.Sprintf("entry %s/layer.tar", strings.Repeat("a", 64)); !strings.Contains(err.Error(), want) {
		t.Fatalf("%v does not say %q", err, want)
	}
}

// FuzzReadDialects wraps a fuzzed config and layer file in an archive of
// each dialect: Read never panics, a refused archive leaves nothing, and
// an accepted image passes the layer check.
func FuzzReadDialects(f *testing.F) {
	layer := tarOf(f, "etc/hello", "hello\n")
	id := digest.FromBytes(layer)
	f.Add(imageConfig(f, id, 0), gzipOf(f, layer))
	f.Add(imageConfig(f, id, 0), layer)
	f.Add(imageConfig(f, digest.FromString("x"), 0), gzipOf(f, layer))
	f.Add(imageConfig(f, id, 0), gzipOf(f, layer)[:20])
	f.Add([]byte(`{"rootfs":{"diff_ids":[]}}`), []byte{})
	f.Add([]byte(`null`), []byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Fuzz(func(t *testing.T, cfg, layer []byte) {
		for _, d := range dialects {
			dst, err := layout.Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			imgs, err := Read(t.Context(), bytes.NewReader(d.make(t, cfg, layer)), dst, ReadOptions{})
			if err != nil {
				n := 0
				dst.Blobs().Walk(func(digest.Digest, int64, error) error { n++; return nil })
				if n != 0 {
					t.Fatalf("%s: refused archive (%v) left %d blobs", d.name, err, n)
				}
			}
			for _, img := range imgs {
				if err := dst.VerifyImage(t.Context(), img.Descriptor, layout.VerifyOptions{DiffIDs: true}); err != nil {
					t.Fatalf("%s: accepted an unsound image: %v", d.name, err)
				}
			}
			dst.Close()
		}
	})
}
