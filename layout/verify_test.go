package layout

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
)

// layerTar is a tar of one file.
func layerTar(t testing.TB, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(body))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageWith stores an image whose one gzip layer is blob and whose config
// says diffID, as a tool that does not check would write it, and names it.
func imageWith(t testing.TB, l *Layout, name string, blob []byte, diffID digest.Digest) (ocispec.Descriptor, ocispec.Descriptor) {
	t.Helper()
	ld, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, blob)
	if err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig(mustPlatform(t, "linux/amd64"))
	if err := cfg.AppendLayer(diffID); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ld}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, name); err != nil {
		t.Fatal(err)
	}
	return md, ld
}

func TestVerifyImage(t *testing.T) {
	l := initTest(t)
	good := layerTar(t, "etc/hello", strings.Repeat("hello\n", 1000))
	gz := gzipBytes(t, good)
	ok, _ := imageWith(t, l, "ok", gz, digest.FromBytes(good))
	wrong, wrongLayer := imageWith(t, l, "wrong", gz, digest.FromBytes(layerTar(t, "x", "y")))
	short, _ := imageWith(t, l, "short", gz[:len(gz)/2], digest.FromBytes(good))
	notTar, _ := imageWith(t, l, "nottar", gzipBytes(t, []byte(strings.Repeat("x", 2000))), digest.FromString(strings.Repeat("x", 2000)))
	ctx := context.Background()

	for _, md := range []ocispec.Descriptor{ok, wrong, short, notTar} {
		if err := l.VerifyImage(ctx, md, VerifyOptions{}); err != nil {
			t.Fatalf("without DiffIDs, %s: %v", md.Digest, err)
		}
	}
	if err := l.VerifyImage(ctx, ok, VerifyOptions{DiffIDs: true}); err != nil {
		t.Fatalf("good image: %v", err)
	}
	err := l.VerifyImage(ctx, wrong, VerifyOptions{DiffIDs: true})
	var le *LayerError
	if !errors.As(err, &le) || !errors.Is(err, ErrDiffIDMismatch) || !errors.Is(err, ErrInvalidImage) {
		t.Fatalf("wrong diff_id: %v", err)
	}
	if le.Manifest != wrong.Digest || le.Layer != wrongLayer.Digest || le.Actual != digest.FromBytes(good) || le.Index != 0 {
		t.Fatalf("LayerError %+v", le)
	}
	if err := l.VerifyImage(ctx, short, VerifyOptions{DiffIDs: true}); !errors.As(err, &le) || le.Actual != "" || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Fatalf("truncated gzip: %v", err)
	}
	if err := l.VerifyImage(ctx, notTar, VerifyOptions{DiffIDs: true}); !errors.Is(err, ErrNotTar) {
		t.Fatalf("not a tar: %v", err)
	}

	// Structure: a config that lists another number of diff_ids, a
	// missing blob, a config over the limit.
	cfg := putRaw(t, l, ocispec.MediaTypeImageConfig, map[string]any{"os": "linux", "architecture": "amd64",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{}}})
	ld, _ := l.PutBytes(ocispec.MediaTypeImageLayerGzip, gz)
	count := putRaw(t, l, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []any{ld}})
	if err := l.VerifyImage(ctx, count, VerifyOptions{}); !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "lists 0 diff_ids") {
		t.Fatalf("diff_ids count: %v", err)
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromString("absent"), Size: 6}
	gone := putRaw(t, l, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": cfg, "layers": []any{missing}})
	if err := l.VerifyImage(ctx, gone, VerifyOptions{}); !errors.Is(err, ErrInvalidImage) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing layer: %v", err)
	}
	bigCfg, err := l.PutBytes(ocispec.MediaTypeImageConfig, append([]byte(`{"x":"`), append(bytes.Repeat([]byte("a"), MaxConfigSize), '"', '}')...))
	if err != nil {
		t.Fatal(err)
	}
	big := putRaw(t, l, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": bigCfg, "layers": []any{}})
	if err := l.VerifyImage(ctx, big, VerifyOptions{}); !errors.Is(err, ErrInvalidImage) || !errors.Is(err, blob.ErrTooLarge) {
		t.Fatalf("config over the limit: %v", err)
	}

	// The payload of an artifact under an image config (a cosign
	// signature's JSON) is no filesystem layer: it is not decompressed.
	payload, _ := l.PutBytes("application/vnd.dev.cosign.simplesigning.v1+json", []byte(`{"critical":{}}`))
	sigCfg := putRaw(t, l, ocispec.MediaTypeImageConfig, map[string]any{"os": "", "architecture": "",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []digest.Digest{payload.Digest}}})
	sig := putRaw(t, l, ocispec.MediaTypeImageManifest, map[string]any{"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "config": sigCfg, "layers": []any{payload}})
	if err := l.VerifyImage(ctx, sig, VerifyOptions{DiffIDs: true}); err != nil {
		t.Fatalf("signature image: %v", err)
	}

	// An index is checked through: its bad manifest makes it bad.
	idx := addIndex(t, l, ok, wrong)
	if err := l.VerifyImage(ctx, idx, VerifyOptions{DiffIDs: true}); !errors.Is(err, ErrDiffIDMismatch) {
		t.Fatalf("index: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.VerifyImage(cctx, ok, VerifyOptions{DiffIDs: true}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// TestLayerCheckerReadsEachBlobOnce: a layer several images list is
// decompressed once.
func TestLayerCheckerReadsEachBlobOnce(t *testing.T) {
	l := initTest(t)
	good := layerTar(t, "a", "b")
	gz := gzipBytes(t, good)
	var descs []ocispec.Descriptor
	for _, n := range []string{"a", "b", "c"} {
		md, _ := imageWith(t, l, n, gz, digest.FromBytes(good))
		descs = append(descs, md)
	}
	lc := l.LayerChecker()
	reads := 0
	lc.onDone = func(int64) { reads++ }
	for _, md := range descs {
		if err := l.VerifyImage(context.Background(), md, VerifyOptions{DiffIDs: true, Layers: lc}); err != nil {
			t.Fatal(err)
		}
	}
	if reads != 1 {
		t.Fatalf("the shared layer was decompressed %d times", reads)
	}
}

// TestFsckDiffIDs: plain fsck cannot see a layer whose blob is intact but
// whose content its config does not describe; FsckOptions.DiffIDs does,
// one problem per bad layer of each image, naming it.
func TestFsckDiffIDs(t *testing.T) {
	l := initTest(t)
	good := layerTar(t, "etc/hello", "hello\n")
	other := layerTar(t, "etc/other", "other\n")
	gz := gzipBytes(t, good)
	imageWith(t, l, "ok", gz, digest.FromBytes(good))
	wrong, wrongLayer := imageWith(t, l, "wrong", gz, digest.FromBytes(other))
	if err := l.Tag(wrong, "wrong-too"); err != nil {
		t.Fatal(err)
	}
	short, shortLayer := imageWith(t, l, "short", gz[:len(gz)-12], digest.FromBytes(good))

	if p, err := l.Fsck(context.Background()); err != nil || len(p) != 0 {
		t.Fatalf("plain fsck: %v %v", p, err)
	}
	var stages []string
	var done atomic.Int64
	p, err := l.FsckWith(context.Background(), FsckOptions{DiffIDs: true, Progress: func(stage string, total int64) func(int64) {
		stages = append(stages, stage)
		return func(n int64) { done.Add(n) }
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(p) != 2 {
		t.Fatalf("problems %v, want 2", p)
	}
	byLayer := map[digest.Digest]Problem{}
	for _, x := range p {
		byLayer[x.Layer] = x
	}
	w := byLayer[wrongLayer.Digest]
	if w.Expected != digest.FromBytes(other) || w.Actual != digest.FromBytes(good) ||
		!strings.Contains(w.Where, wrong.Digest.String()) || !strings.Contains(w.Where, "wrong, wrong-too") ||
		!strings.Contains(w.Where, wrongLayer.Digest.String()) || !strings.Contains(w.Err, "diff_id") {
		t.Fatalf("wrong diffID problem: %+v", w)
	}
	s := byLayer[shortLayer.Digest]
	if s.Expected != digest.FromBytes(good) || s.Actual != "" || !strings.Contains(s.Where, short.Digest.String()) || !strings.Contains(s.Err, "unexpected EOF") {
		t.Fatalf("truncated layer problem: %+v", s)
	}
	if strings.Join(stages, ",") != FsckStageBlobs+","+FsckStageDiffIDs || done.Load() == 0 {
		t.Fatalf("progress stages %v, %d bytes", stages, done.Load())
	}
}

// FuzzLayerDiffID feeds arbitrary layer blobs to the layer check: it never
// panics, and what it accepts is a tar whose digest it returned.
func FuzzLayerDiffID(f *testing.F) {
	good := layerTar(f, "etc/hello", "hello\n")
	f.Add(good)
	f.Add(gzipBytes(f, good))
	f.Add(gzipBytes(f, good)[:30])
	f.Add(append(gzipBytes(f, good), 0x1f, 0x8b, 0))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Add([]byte("not a tar"))
	l := initTest(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.LayerChecker().DiffID(context.Background(), d, digest.SHA256)
		if err != nil {
			return
		}
		if !got.Algorithm().Available() || got.Validate() != nil {
			t.Fatalf("diffID %q", got)
		}
		if got == d.Digest {
			if _, err := tar.NewReader(bytes.NewReader(b)).Next(); err != nil && err != io.EOF {
				t.Fatalf("accepted a plain layer that is not a tar: %v", err)
			}
		}
	})
}
