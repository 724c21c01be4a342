package layout

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/testenv"
)

// testTar builds a small tar with a file of random (incompressible) data
// large enough to span several pipe chunks.
func testTar(t testing.TB, randomBytes int) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		body []byte
	}{
		{"etc/os-release", []byte("NAME=test\n")},
		{"bin/hello", []byte("#!/bin/sh\necho hello\n")},
	}
	data := make([]byte, randomBytes)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	files = append(files, struct {
		name string
		body []byte
	}{"data/random", data})
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compressWith runs a command-line compressor, so the test does not check
// our code against itself.
func compressWith(t testing.TB, tool string, in []byte) []byte {
	t.Helper()
	if tool == "" {
		return in
	}
	testenv.RequireTool(t, tool)
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", tool, err, errb.String())
	}
	return out.Bytes()
}

func newTestLayout(t testing.TB) *Layout {
	t.Helper()
	l, err := Init(filepath.Join(t.TempDir(), "oci"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestPutLayerForms(t *testing.T) {
	tarball := testTar(t, 3<<20)
	want := digest.FromBytes(tarball)
	tests := []struct {
		tool     string
		opts     []LayerOption
		wantIn   compression.Kind
		wantMT   string
		asIs     bool
		wantOut  compression.Kind
		describe string
	}{
		{"", nil, compression.None, ocispec.MediaTypeImageLayerGzip, false, compression.Gzip, "plain to gzip"},
		{"gzip", nil, compression.Gzip, ocispec.MediaTypeImageLayerGzip, true, compression.Gzip, "gzip as is"},
		{"zstd", nil, compression.Zstd, ocispec.MediaTypeImageLayerZstd, true, compression.Zstd, "zstd as is"},
		{"xz", nil, compression.Xz, ocispec.MediaTypeImageLayerGzip, false, compression.Gzip, "xz to gzip"},
		{"bzip2", nil, compression.Bzip2, ocispec.MediaTypeImageLayerGzip, false, compression.Gzip, "bzip2 to gzip"},
		{"", []LayerOption{WithCompression(compression.Zstd)}, compression.None, ocispec.MediaTypeImageLayerZstd, false, compression.Zstd, "plain to zstd"},
		{"", []LayerOption{WithCompression(compression.None)}, compression.None, ocispec.MediaTypeImageLayer, false, compression.None, "plain stored plain"},
		{"xz", []LayerOption{WithCompression(compression.None)}, compression.Xz, ocispec.MediaTypeImageLayer, false, compression.None, "xz to plain"},
		{"gzip", []LayerOption{WithCompression(compression.Zstd), WithRecompress()}, compression.Gzip, ocispec.MediaTypeImageLayerZstd, false, compression.Zstd, "gzip forced to zstd"},
		{"zstd", []LayerOption{WithCompression(compression.Gzip), WithRecompress(), WithLevel(1)}, compression.Zstd, ocispec.MediaTypeImageLayerGzip, false, compression.Gzip, "zstd forced to gzip"},
		{"gzip", []LayerOption{WithCompression(compression.Zstd)}, compression.Gzip, ocispec.MediaTypeImageLayerGzip, true, compression.Gzip, "gzip kept without force"},
	}
	for _, tc := range tests {
		t.Run(tc.describe, func(t *testing.T) {
			in := compressWith(t, tc.tool, tarball)
			l := newTestLayout(t)
			for _, check := range []bool{false, true} {
				opts := tc.opts
				if check {
					opts = append(append([]LayerOption{}, opts...), WithTarCheck())
				}
				ly, err := l.PutLayer(context.Background(), bytes.NewReader(in), opts...)
				if err != nil {
					t.Fatalf("check=%v: %v", check, err)
				}
				if ly.DiffID != want {
					t.Fatalf("diffID %s, want %s", ly.DiffID, want)
				}
				if ly.UncompressedSize != int64(len(tarball)) {
					t.Fatalf("uncompressed size %d, want %d", ly.UncompressedSize, len(tarball))
				}
				if ly.Input != tc.wantIn || ly.Descriptor.MediaType != tc.wantMT || ly.Recompressed == tc.asIs {
					t.Fatalf("got %+v", ly)
				}
				if tc.asIs && ly.Descriptor.Digest != digest.FromBytes(in) {
					t.Fatalf("blob %s is not the input bytes", ly.Descriptor.Digest)
				}
				// The stored blob decompresses to the tar.
				rc, err := l.Blobs().Open(ly.Descriptor.Digest, ly.Descriptor.Size)
				if err != nil {
					t.Fatal(err)
				}
				zr, err := compression.NewReader(rc, tc.wantOut)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(zr)
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, tarball) {
					t.Fatal("stored blob does not decompress to the input tar")
				}
			}
		})
	}
}

func blobList(t testing.TB, l *Layout) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(l.Dir(), BlobsDir), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

func stagingFiles(t testing.TB, l *Layout) int {
	ents, err := os.ReadDir(filepath.Join(l.Dir(), StateDir, "staging"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return len(ents)
}

func TestPutLayerRefusesNonTar(t *testing.T) {
	text := bytes.Repeat([]byte("this is not a tar archive\n"), 50000)
	tarball := testTar(t, 1000)
	tests := []struct {
		name string
		in   []byte
	}{
		{"text", text},
		{"gzip text", compressWith(t, "gzip", text)},
		{"zstd text", compressWith(t, "zstd", text)},
		{"xz text", compressWith(t, "xz", text)},
		{"bzip2 text", compressWith(t, "bzip2", text)},
		{"empty", nil},
		{"short", []byte("hi\n")},
		{"truncated tar", tarball[:3000]},
		{"corrupt gzip", append(compressWith(t, "gzip", tarball)[:200:200], bytes.Repeat([]byte{1}, 300)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLayout(t)
			before := blobList(t, l)
			_, err := l.PutLayer(context.Background(), bytes.NewReader(tc.in), WithTarCheck())
			if err == nil {
				t.Fatal("non-tar input was accepted")
			}
			if tc.name != "corrupt gzip" && !errors.Is(err, ErrNotTar) {
				t.Fatalf("error %v is not ErrNotTar", err)
			}
			if after := blobList(t, l); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("blobs changed: %v -> %v", before, after)
			}
			if n := stagingFiles(t, l); n != 0 {
				t.Fatalf("%d staging files left", n)
			}
		})
	}
}

type failingReader struct {
	r     io.Reader
	after int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	if len(p) > f.after {
		p = p[:f.after]
	}
	n, err := f.r.Read(p)
	f.after -= n
	return n, err
}

func TestPutLayerSourceError(t *testing.T) {
	tarball := testTar(t, 2<<20)
	for _, tool := range []string{"", "gzip", "zstd"} {
		t.Run("input "+tool, func(t *testing.T) {
			in := compressWith(t, tool, tarball)
			l := newTestLayout(t)
			_, err := l.PutLayer(context.Background(), &failingReader{r: bytes.NewReader(in), after: len(in) / 2}, WithTarCheck())
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte("disk on fire")) {
				t.Fatalf("error %v does not name the source failure", err)
			}
			if len(blobList(t, l)) != 0 || stagingFiles(t, l) != 0 {
				t.Fatal("a failed layer write left files")
			}
		})
	}
}

func TestLayerMediaType(t *testing.T) {
	for _, k := range []compression.Kind{compression.Xz, compression.Bzip2, "lz4"} {
		if _, err := LayerMediaType(k); !errors.Is(err, compression.ErrUnsupported) {
			t.Fatalf("%s: %v", k, err)
		}
	}
	l := newTestLayout(t)
	if _, err := l.PutLayer(context.Background(), bytes.NewReader(nil), WithCompression(compression.Xz)); !errors.Is(err, compression.ErrUnsupported) {
		t.Fatalf("xz output: %v", err)
	}
}

func FuzzPutLayer(f *testing.F) {
	tarball := testTar(f, 100)
	f.Add(tarball)
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3})
	f.Add([]byte("BZh91AY&SY"))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0, 0})
	f.Add(make([]byte, 1024))
	l, err := Init(filepath.Join(f.TempDir(), "oci"))
	if err != nil {
		f.Fatal(err)
	}
	defer l.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		ly, err := l.PutLayer(context.Background(), bytes.NewReader(in), WithTarCheck())
		if err != nil {
			return
		}
		if !l.Blobs().Has(ly.Descriptor.Digest, ly.Descriptor.Size) {
			t.Fatalf("layer %s reported stored but missing", ly.Descriptor.Digest)
		}
	})
}

// cancelAfter cancels a context once n bytes have been read through it.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel func()
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n -= n
	if c.n <= 0 {
		c.cancel()
	}
	return n, err
}

func TestPutLayerContext(t *testing.T) {
	tarball := testTar(t, 4<<20)
	for _, tool := range []string{"", "gzip"} {
		t.Run("input "+tool, func(t *testing.T) {
			in := compressWith(t, tool, tarball)
			l := newTestLayout(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := &cancelAfter{r: bytes.NewReader(in), n: len(in) / 3, cancel: cancel}
			_, err := l.PutLayer(ctx, r, WithTarCheck())
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v is not context.Canceled", err)
			}
			if len(blobList(t, l)) != 0 || stagingFiles(t, l) != 0 {
				t.Fatal("a cancelled layer write left files")
			}
		})
	}
}

// BenchmarkPutLayer measures the whole one-pass pipeline (sniff, tar
// check, both digests, compression, blob write and fsync) per input form.
func BenchmarkPutLayer(b *testing.B) {
	tarball := testTar(b, 32<<20)
	// Half of the random file made compressible, as layers usually are.
	copy(tarball[len(tarball)/2:len(tarball)-8192], bytes.Repeat([]byte("usr/lib/x86_64-linux-gnu "), len(tarball)/2/25))
	for _, tc := range []struct {
		name string
		tool string
		opts []LayerOption
	}{
		{"plain-to-gzip", "", nil},
		{"plain-to-zstd", "", []LayerOption{WithCompression(compression.Zstd)}},
		{"gzip-as-is", "gzip", nil},
		{"zstd-as-is", "zstd", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			in := compressWith(b, tc.tool, tarball)
			l := newTestLayout(b)
			opts := append([]LayerOption{WithTarCheck()}, tc.opts...)
			b.SetBytes(int64(len(tarball)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ly, err := l.PutLayer(context.Background(), bytes.NewReader(in), opts...)
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := l.Blobs().Delete(ly.Descriptor.Digest); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
