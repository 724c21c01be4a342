package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

func TestCleanName(t *testing.T) {
	cases := []struct {
		in, want string
		bad      bool
	}{
		{"manifest.json", "manifest.json", false},
		{"./manifest.json", "manifest.json", false},
		{"blobs//sha256/x", "blobs/sha256/x", false},
		{"a/./b", "a/b", false},
		{"../x", "", true},
		{"a/../../x", "", true},
		{"a/../b", "", true}, // any ".." is refused, even one that stays inside
		{"/etc/passwd", "", true},
		{"", "", true},
		{"a\x00b", "", true},
	}
	for _, c := range cases {
		got, err := cleanName(c.in)
		if c.bad {
			if !errors.Is(err, ErrUnsafeEntry) {
				t.Errorf("cleanName(%q) = %q, %v; want ErrUnsafeEntry", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestDockerTag(t *testing.T) {
	cases := map[string]string{
		"busybox":                     "busybox:latest",
		"busybox:1":                   "busybox:1",
		"docker.io/library/busybox:1": "busybox:1",
		"example.com:5000/a/b:2":      "example.com:5000/a/b:2",
		"quay.io/x/y":                 "quay.io/x/y:latest",
		"@sha256:abc":                 "",
		"Upper:1":                     "",
	}
	for in, want := range cases {
		if got := DockerTag(in); got != want {
			t.Errorf("DockerTag(%q) = %q, want %q", in, got, want)
		}
	}
	if !sameName("busybox", "docker.io/library/busybox:latest") || sameName("busybox:1", "busybox:2") {
		t.Error("sameName")
	}
}

// testLayout makes a layout with one small image named name.
func testLayout(t testing.TB, name string) (*layout.Layout, ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("hello " + name)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/hello", Mode: 0o644, Size: int64(len(body))})
	tw.Write(body)
	tw.Close()
	ly, err := l.PutLayer(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(ly.DiffID); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly.Descriptor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, name); err != nil {
		t.Fatal(err)
	}
	return l, md
}

func TestWriteRead(t *testing.T) {
	src, md := testLayout(t, "example.com/a:1")
	for _, f := range []Format{Docker, OCI} {
		t.Run(string(f), func(t *testing.T) {
			var a, b bytes.Buffer
			imgs := []Image{{Descriptor: md, Names: []string{"example.com/a:1", "example.com/a:latest"}}}
			if err := Write(context.Background(), &a, src, f, imgs); err != nil {
				t.Fatal(err)
			}
			if err := Write(context.Background(), &b, src, f, imgs); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("archive is not deterministic")
			}
			dst, err := layout.Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			got, err := Read(context.Background(), bytes.NewReader(a.Bytes()), dst, ReadOptions{Name: "example.com/a:latest"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Descriptor.Digest != md.Digest || got[0].Names[0] != "example.com/a:latest" {
				t.Fatalf("read %+v", got)
			}
			for _, sel := range []string{"other", "@1", "@" + string(digest.FromString("nothing")), "@x"} {
				if _, err := Read(context.Background(), bytes.NewReader(a.Bytes()), dst, ReadOptions{Name: sel}); !errors.Is(err, ErrNoImage) {
					t.Fatalf("select %s: %v", sel, err)
				}
			}
			for _, sel := range []string{"@0", "@" + string(md.Digest)} {
				got, err := Read(context.Background(), bytes.NewReader(a.Bytes()), dst, ReadOptions{Name: sel})
				if err != nil || len(got) != 1 || got[0].Descriptor.Digest != md.Digest {
					t.Fatalf("select %s: %+v %v", sel, got, err)
				}
			}
			ents, _ := os.ReadDir(filepath.Join(dst.Dir(), layout.StateDir))
			for _, e := range ents {
				if e.IsDir() && e.Name() != "staging" && e.Name() != "seals" {
					t.Fatalf("left %s behind", e.Name())
				}
			}
		})
	}
}

// FuzzRead feeds arbitrary bytes to the reader: it must never panic, and
// whatever it accepts must be a sound image in the destination.
func FuzzRead(f *testing.F) {
	src, md := testLayout(f, "x:1")
	for _, format := range []Format{Docker, OCI} {
		var b bytes.Buffer
		if err := Write(context.Background(), &b, src, format, []Image{{Descriptor: md, Names: []string{"x:1"}}}); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
		f.Add(b.Bytes()[:b.Len()/3])
	}
	f.Add([]byte{})
	f.Add([]byte("not a tar"))
	layer := tarOf(f, "etc/hello", "hello\n")
	for _, d := range dialects {
		f.Add(d.make(f, imageConfig(f, digest.FromBytes(layer), 0), gzipOf(f, layer)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, err := layout.Init(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		imgs, err := Read(context.Background(), bytes.NewReader(data), dst, ReadOptions{})
		if err != nil {
			if ents, _ := os.ReadDir(filepath.Join(dst.Dir(), "blobs", "sha256")); len(ents) != 0 {
				t.Fatalf("refused archive (%v) left %d blobs", err, len(ents))
			}
			return
		}
		for _, img := range imgs {
			if err := dst.VerifyImage(context.Background(), img.Descriptor, layout.VerifyOptions{DiffIDs: true}); err != nil {
				t.Fatalf("accepted an unsound image: %v", err)
			}
		}
	})
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "../a", "/a", "a/../b", "./a", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := cleanName(s)
		if err != nil {
			return
		}
		if filepath.IsAbs(c) || c == ".." || (len(c) > 2 && c[:3] == "../") {
			t.Fatalf("cleanName(%q) = %q escapes", s, c)
		}
	})
}

// TestReadForeignPlatform reads an archive holding an index of which only
// one, non-host, platform's blobs are present, as docker save writes for
// a pulled image.
func TestReadForeignPlatform(t *testing.T) {
	src, md := testLayout(t, "x:1")
	arm := md
	arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "s390x"}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest("sha256:" + strings.Repeat("0", 64)), Size: 10,
		Platform: &ocispec.Platform{OS: "linux", Architecture: "riscv64"}}
	idxDesc, err := src.PutJSON(ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{arm, missing},
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	put := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	err = src.Walk(md, func(d ocispec.Descriptor, _ []byte) error {
		b, err := src.Blobs().ReadAll(d.Digest, d.Size, 1<<20)
		put(blobPath(d.Digest), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := src.Blobs().ReadAll(idxDesc.Digest, idxDesc.Size, 1<<20)
	put(blobPath(idxDesc.Digest), ib)
	top, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{idxDesc}})
	put("index.json", top)
	tw.Close()

	dst, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	got, err := Read(context.Background(), bytes.NewReader(buf.Bytes()), dst, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Descriptor.Digest != md.Digest {
		t.Fatalf("read %+v, want manifest %s", got, md.Digest)
	}
	// Asking for a platform that is not there is an error.
	_, err = Read(context.Background(), bytes.NewReader(buf.Bytes()), dst, ReadOptions{Copy: layout.CopyOptions{Platforms: []ocispec.Platform{{OS: "linux", Architecture: "riscv64"}}}})
	if err == nil {
		t.Fatal("read a platform whose blobs are missing")
	}
}

// zstd layers cannot go into a docker-archive: the error says which image
// and layer, and matches both ErrNotDockerCompatible and
// layout.ErrZstdDocker (the CLI's hint names the flag).
func TestWriteRefusesZstdInDocker(t *testing.T) {
	src, md := testLayout(t, "x:1")
	zd, err := layout.Convert(context.Background(), src, md, layout.ConvertOptions{Compression: layout.CompressionZstd})
	if err != nil {
		t.Fatal(err)
	}
	err = Write(context.Background(), io.Discard, src, Docker, []Image{{Descriptor: zd, Names: []string{"x:1"}}})
	if !errors.Is(err, ErrNotDockerCompatible) || !errors.Is(err, layout.ErrZstdDocker) || !strings.Contains(err.Error(), zd.Digest.String()) {
		t.Fatalf("Write = %v", err)
	}
	if err := Write(context.Background(), io.Discard, src, OCI, []Image{{Descriptor: zd, Names: []string{"x:1"}}}); err != nil {
		t.Fatalf("an oci-archive takes zstd: %v", err)
	}
}
