package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestIndexSizeLimit: an index.json over MaxIndexSize is refused, naming
// the file, instead of read whole; and an update that would write one is
// refused with index.json left as it was.
func TestIndexSizeLimit(t *testing.T) {
	l := initTest(t)
	p := filepath.Join(l.Dir(), IndexFile)
	// Valid JSON, just too large: padding after the object.
	big := append([]byte(`{"schemaVersion":2,"manifests":[]}`), bytes.Repeat([]byte(" "), MaxIndexSize)...)
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := l.Index()
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Index of a %d-byte index.json: %v; want ErrTooLarge naming %s", len(big), err, p)
	}
	if _, err := l.List(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("List: %v", err)
	}
	md := addImage(t, l, "linux/amd64", "a layer")
	if err := l.Tag(md, "v1"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Tag: %v", err)
	}

	// Just under the limit (an unknown field fills it): readable, but a
	// new name would take it over, so the tag is refused.
	fill := MaxIndexSize - 200
	near, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{}, "x-fill": strings.Repeat("f", fill)})
	if err := os.WriteFile(p, near, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Index(); err != nil {
		t.Fatalf("an index.json under the limit: %v", err)
	}
	if err := l.Tag(md, "v1"); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Tag past the limit: %v", err)
	}
	if b, _ := os.ReadFile(p); !bytes.Equal(b, near) {
		t.Fatal("a refused update changed index.json")
	}
}

// TestDocumentSizeLimits: manifests, indexes and configs over their
// limits are refused when read, naming the blob.
func TestDocumentSizeLimits(t *testing.T) {
	l := initTest(t)
	pad := strings.Repeat(" ", MaxManifestSize)
	layer, err := l.PutBytes(ocispec.MediaTypeImageLayer, []byte("layer"))
	if err != nil {
		t.Fatal(err)
	}
	// A config over MaxConfigSize: valid JSON, padded.
	cfgBytes := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + digest.FromString("layer").String() + `"]}}` + strings.Repeat(" ", MaxConfigSize))
	cfg, err := l.PutBytes(ocispec.MediaTypeImageConfig, cfgBytes)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}})
	bigCfg, err := l.PutBytes(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		t.Fatal(err)
	}
	bigManifest, err := l.PutBytes(ocispec.MediaTypeImageManifest, append(m, pad...))
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex})
	bigIndex, err := l.PutBytes(ocispec.MediaTypeImageIndex, append(idx, pad...))
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		desc  ocispec.Descriptor
		named digest.Digest
	}{
		"config":   {bigCfg, cfg.Digest},
		"manifest": {bigManifest, bigManifest.Digest},
		"index":    {bigIndex, bigIndex.Digest},
	} {
		t.Run(name, func(t *testing.T) {
			var err error
			if name == "index" {
				_, err = l.SelectManifest(tc.desc, nil)
			} else {
				_, err = l.ReadImage(tc.desc)
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.named.String()) {
				t.Fatalf("%v; want ErrTooLarge naming %s", err, tc.named)
			}
		})
	}
}

// zstdDeclaringWindow compresses data as one zstd frame whose header
// declares window bytes of history (a power of two): encoded with a small
// window, which any larger one contains, then the header's window
// descriptor is set.
func zstdDeclaringWindow(t *testing.T, data []byte, window int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	// Flushed before the end: the header is written before the size is
	// known, so it has a window descriptor (byte 5).
	zw.Write(data[:len(data)/2])
	zw.Flush()
	zw.Write(data[len(data)/2:])
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	z := buf.Bytes()
	z[5] = byte(bits.Len(uint(window))-1-10) << 3
	var h zstd.Header
	if err := h.Decode(z); err != nil || h.WindowSize != uint64(window) {
		t.Fatalf("header declares %d (%v), want %d", h.WindowSize, err, window)
	}
	return z
}

// TestImportZstdWindowLimit: a zstd layer whose window is over
// MaxZstdWindow is refused on import with ErrZstdWindow and nothing is
// added; one at the limit imports.
func TestImportZstdWindowLimit(t *testing.T) {
	l := initTest(t)
	tarball := testTar(t, 64<<10)
	before := blobList(t, l)
	_, err := l.Import(context.Background(), bytes.NewReader(zstdDeclaringWindow(t, tarball, 2*MaxZstdWindow)), ImportOptions{})
	if !errors.Is(err, ErrZstdWindow) {
		t.Fatalf("import of a zstd layer with a %d MiB window: %v", 2*MaxZstdWindow>>20, err)
	}
	if after := blobList(t, l); strings.Join(after, ",") != strings.Join(before, ",") || stagingFiles(t, l) != 0 {
		t.Fatalf("a refused import left blobs %q (before %q) or staging files", after, before)
	}
	if _, err := l.Import(context.Background(), bytes.NewReader(zstdDeclaringWindow(t, tarball, MaxZstdWindow)), ImportOptions{}); err != nil {
		t.Fatalf("import at the limit: %v", err)
	}
}
