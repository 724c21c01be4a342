package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// blobEntry is a blob of a hand-made oci-archive, streamed from open so
// that a large one is never held in memory.
type blobEntry struct {
	size int64
	open func() io.Reader
}

func bytesBlob(b []byte) blobEntry {
	return blobEntry{int64(len(b)), func() io.Reader { return bytes.NewReader(b) }}
}

func (b blobEntry) digest(t testing.TB) digest.Digest {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, b.open()); err != nil {
		t.Fatal(err)
	}
	return digest.NewDigest(digest.SHA256, h)
}

// writeOCIArchive writes an oci-archive of one image named name, from a
// config and one gzip layer, to path, as a tool that checks nothing would.
func writeOCIArchive(t testing.TB, path, name string, cfg, layer blobEntry) {
	t.Helper()
	cd := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfg.digest(t), Size: cfg.size}
	ld := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: layer.digest(t), Size: layer.size}
	m := jsonBytes(t, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(m), Size: int64(len(m)),
		Annotations: map[string]string{ocispec.AnnotationRefName: name}}
	idx := jsonBytes(t, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{md}})
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		b    blobEntry
	}{
		{"oci-layout", bytesBlob([]byte(`{"imageLayoutVersion":"1.0.0"}`))},
		{"blobs/sha256/" + cd.Digest.Encoded(), cfg},
		{"blobs/sha256/" + ld.Digest.Encoded(), layer},
		{"blobs/sha256/" + md.Digest.Encoded(), bytesBlob(m)},
		{"index.json", bytesBlob(idx)},
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: e.b.size}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(tw, e.b.open()); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// configOf is an image config for one layer of diffID, padded with an
// extra field to pad more bytes, streamed.
func configOf(diffID digest.Digest, pad int64) blobEntry {
	head := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + diffID.String() + `"]},"x-pad":"`)
	tail := []byte(`"}`)
	return blobEntry{int64(len(head)+len(tail)) + pad, func() io.Reader {
		return io.MultiReader(bytes.NewReader(head), io.LimitReader(repeatReader('a'), pad), bytes.NewReader(tail))
	}}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

func gzipOf(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestLoadRefusesInconsistentOCIArchives: the oci-archives the tester of
// issue 18 loaded with exit 0 (a layer whose content is not its config's
// diff_id, a truncated gzip layer whose blob digest is the truncated
// bytes', a 200 MB config) are refused by load and copy, as docker-archives
// always were, and leave the destination as it was.
func TestLoadRefusesInconsistentOCIArchives(t *testing.T) {
	rng := rand.New(rand.NewSource(18))
	data := make([]byte, 512<<10)
	rng.Read(data)
	layer := busyboxTar(t, string(data))
	diffID := digest.FromBytes(layer)
	gz := gzipOf(t, layer)
	wrong := digest.FromBytes(busyboxTar(t, "other"))
	cases := []struct {
		name       string
		cfg, layer blobEntry
		want       string
	}{
		{"diff_id mismatch", configOf(wrong, 0), bytesBlob(gz), "uncompressed content is " + diffID.String() + ", config says diff_id " + wrong.String()},
		{"truncated gzip", configOf(diffID, 0), bytesBlob(gz[:len(gz)/2]), "unexpected EOF"},
		{"200 MB config", configOf(diffID, 200<<20), bytesBlob(gz), "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "a.tar")
			writeOCIArchive(t, f, "hostile:1", c.cfg, c.layer)
			dst := filepath.Join(dir, "layout")
			makeImage(t, dst, "existing", "linux/amd64", "", "existing")
			before := snapshotLayout(t, dst)
			for _, args := range [][]string{{"load", f, dst}, {"copy", "oci-archive:" + f, "oci:" + dst + ":hostile"}} {
				r := strataFail(t, args...)
				if r.Code != 1 || !strings.Contains(r.Stderr, c.want) || !strings.Contains(r.Stderr, "invalid image") {
					t.Fatalf("strata %s: exit %d, want 1 and an error saying %q:\n%s", strings.Join(args, " "), r.Code, c.want, r.Stderr)
				}
				if after := snapshotLayout(t, dst); after != before {
					t.Fatalf("strata %s changed the layout:\nbefore %s\nafter %s", args[0], before, after)
				}
			}
			// The check is the one loader's: the same image with a
			// sound config and layer loads.
			good := filepath.Join(dir, "good.tar")
			writeOCIArchive(t, good, "good:1", configOf(diffID, 10), bytesBlob(gz))
			strata(t, "load", good, dst)
			strata(t, "fsck", "--diffids", dst)
		})
	}
}

// imageWithDiffID stores, by hand, an image whose one gzip layer is
// layer and whose config says diffID, and names it.
func imageWithDiffID(t testing.TB, dir, name string, layer []byte, diffID digest.Digest) (manifest, layerDesc ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ld, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
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

// TestFsckDiffIDs: a layout received from elsewhere with a layer whose
// content is not what its config says passes plain fsck (every blob
// matches its digest) and fails fsck --diffids, one line per bad layer
// naming the image, manifest, layer, expected and actual diffIDs.
func TestFsckDiffIDs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "layout")
	layer := busyboxTar(t, "fsck")
	other := busyboxTar(t, "other")
	imageWithDiffID(t, dir, "good", gzipOf(t, layer), digest.FromBytes(layer))
	md, ld := imageWithDiffID(t, dir, "bad", gzipOf(t, layer), digest.FromBytes(other))

	if out := strata(t, "fsck", dir); strings.TrimSpace(out) != "ok" {
		t.Fatalf("plain fsck: %q", out)
	}
	r := strataFail(t, "fsck", "--diffids", dir)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if r.Code != 1 || len(lines) != 1 {
		t.Fatalf("fsck --diffids: exit %d, %q, %q", r.Code, r.Stdout, r.Stderr)
	}
	for _, want := range []string{md.Digest.String(), "(bad)", ld.Digest.String(), digest.FromBytes(other).String(), digest.FromBytes(layer).String()} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("fsck --diffids line %q does not name %s", lines[0], want)
		}
	}
	r = strataFail(t, "fsck", "--diffids", "--json", dir)
	var probs []layout.Problem
	if err := json.Unmarshal([]byte(r.Stdout), &probs); err != nil {
		t.Fatalf("fsck --json: %v\n%s", err, r.Stdout)
	}
	if len(probs) != 1 || probs[0].Layer != ld.Digest || probs[0].Expected != digest.FromBytes(other) || probs[0].Actual != digest.FromBytes(layer) {
		t.Fatalf("fsck --diffids --json: %+v", probs)
	}
	// The bad image is named in the text: untag it and the layout is clean.
	strata(t, "rm", dir+":bad")
	strata(t, "gc", dir)
	if out := strata(t, "fsck", "--diffids", dir); strings.TrimSpace(out) != "ok" {
		t.Fatalf("fsck --diffids of a sound layout: %q", out)
	}
}

// TestCopyRefusesInconsistentImage: an image whose config lists another
// number of diff_ids than it has layers goes nowhere (copy, save), so it
// cannot spread from a layout received from elsewhere.
func TestCopyRefusesInconsistentImage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	layer := busyboxTar(t, "count")
	l, err := layout.Init(src)
	if err != nil {
		t.Fatal(err)
	}
	ld, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, gzipOf(t, layer))
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	cfg.AppendLayer(digest.FromBytes(layer))
	cfg.AppendLayer(digest.FromBytes(layer))
	cb, _ := cfg.Bytes()
	cd, err := l.PutBytes(ocispec.MediaTypeImageConfig, cb)
	if err != nil {
		t.Fatal(err)
	}
	md, err := l.PutJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{ld}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, "x"); err != nil {
		t.Fatal(err)
	}
	l.Close()
	for _, args := range [][]string{
		{"copy", "oci:" + src + ":x", "oci:" + filepath.Join(dir, "dst") + ":x"},
		{"save", src + ":x", "-o", filepath.Join(dir, "x.tar")},
	} {
		r := strataFail(t, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "lists 2 diff_ids") {
			t.Errorf("strata %s: exit %d, %s", args[0], r.Code, r.Stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.tar")); err == nil {
		t.Error("save wrote an archive of the image")
	}
}
