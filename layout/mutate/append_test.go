package mutate_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// layerEntries reads a stored layer and describes its entries, one line
// each: name, type, mode, owner, mtime, link target, content.
func layerEntries(t *testing.T, l *layout.Layout, d ocispec.Descriptor) []string {
	t.Helper()
	b, err := l.ReadBlob(d, 64<<20)
	layertest.Must(t, err)
	kind, r, err := compression.Sniff(bytes.NewReader(b))
	layertest.Must(t, err)
	zr, err := compression.NewReader(r, kind)
	layertest.Must(t, err)
	defer zr.Close()
	tr := tar.NewReader(zr)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		layertest.Must(t, err)
		body, err := io.ReadAll(tr)
		layertest.Must(t, err)
		line := strings.Join([]string{h.Name, string(h.Typeflag), strconv.FormatInt(h.Mode, 8), strconv.Itoa(h.Uid) + ":" + strconv.Itoa(h.Gid), h.ModTime.UTC().Format(time.RFC3339), h.Linkname, string(body)}, " ")
		out = append(out, strings.TrimSpace(line))
	}
}

// appendDir makes a directory with a file, a hardlink, a symlink, a
// subdirectory and a fifo, owned by 1234:5678 where the test may chown,
// all with mtime at.
func appendDir(t *testing.T, at time.Time) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "add")
	layertest.Must(t, os.MkdirAll(filepath.Join(dir, "opt/app"), 0o755))
	layertest.Must(t, os.WriteFile(filepath.Join(dir, "opt/app/run"), []byte("#!/bin/sh\n"), 0o755))
	layertest.Must(t, os.Link(filepath.Join(dir, "opt/app/run"), filepath.Join(dir, "opt/app/run2")))
	layertest.Must(t, os.Symlink("app/run", filepath.Join(dir, "opt/run")))
	layertest.Must(t, syscall.Mkfifo(filepath.Join(dir, "opt/fifo"), 0o600))
	for _, p := range []string{"opt/app/run", "opt/run", "opt/fifo", "opt/app", "opt"} {
		if os.Getuid() == 0 {
			layertest.Must(t, os.Lchown(filepath.Join(dir, p), 1234, 5678))
		}
		ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(at.UnixNano())}
		layertest.Must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	return dir
}

func TestAppendEveryPlatform(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := appendDir(t, at)
	tarball := filepath.Join(t.TempDir(), "extra.tar.gz")
	layertest.Must(t, os.WriteFile(tarball, layertest.Gzip(layertest.Tar(layertest.File("extra", "x\n", 0o644))), 0o644))
	created := time.Date(2025, 5, 5, 5, 5, 5, 0, time.UTC)
	clamp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	res, err := mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: dir}, {Path: tarball, CreatedBy: "extra files"}}, mutate.AppendOptions{
		Created: &created, Comment: "two more", Dir: mutate.DirOptions{Clamp: &clamp},
	})
	layertest.Must(t, err)
	if len(res.Images) != 2 || len(res.Layers) != 2 {
		t.Fatalf("%d images, %d layers: want 2, 2", len(res.Images), len(res.Layers))
	}
	if res.Layers[1].Recompressed {
		t.Errorf("gzip tarball recompressed")
	}
	for _, p := range []ocispec.Platform{amd64, arm64} {
		old := f.image(t, f.index, p)
		img := f.image(t, res.Root, p)
		if n := len(img.Manifest.Layers); n != 5 {
			t.Fatalf("%s: %d layers", p.Architecture, n)
		}
		for i := 0; i < 3; i++ {
			if img.Manifest.Layers[i].Digest != old.Manifest.Layers[i].Digest {
				t.Errorf("%s: layer %d changed", p.Architecture, i)
			}
		}
		for i, ly := range res.Layers {
			if img.Manifest.Layers[3+i].Digest != ly.Descriptor.Digest || img.Config.RootFS.DiffIDs[3+i] != ly.DiffID {
				t.Errorf("%s: new layer %d is not the one stored", p.Architecture, i)
			}
		}
		h := img.Config.History
		if len(h) != 5 || h[3].CreatedBy != "strata append "+dir || h[4].CreatedBy != "extra files" || h[4].Comment != "two more" || !h[3].Created.Equal(created) {
			t.Errorf("%s: history %+v", p.Architecture, h)
		}
		if !img.Config.Created.Equal(created) {
			t.Errorf("%s: created %v", p.Architecture, img.Config.Created)
		}
		layertest.Must(t, f.l.VerifyImage(context.Background(), img.Descriptor, layout.VerifyOptions{DiffIDs: true}))
	}
	got := strings.Join(layerEntries(t, f.l, res.Layers[0].Descriptor), "\n")
	cl := clamp.Format(time.RFC3339)
	want := strings.Join([]string{
		"opt/ 5 755 0:0 " + cl,
		"opt/app/ 5 755 0:0 " + cl,
		"opt/app/run 0 755 0:0 " + cl + "  #!/bin/sh",
		"opt/app/run2 1 755 0:0 " + cl + " opt/app/run",
		"opt/fifo 6 600 0:0 " + cl,
		"opt/run 2 777 0:0 " + cl + " app/run",
	}, "\n")
	if got != want {
		t.Errorf("directory layer:\n%s\nwant:\n%s", got, want)
	}
}

func TestAppendPreserveOwnerAndPlatform(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("chown needs root")
	}
	f := newFixture(t)
	at := time.Date(2020, 1, 1, 0, 0, 0, 123, time.UTC)
	dir := appendDir(t, at)
	res, err := mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: dir}}, mutate.AppendOptions{
		Dir: mutate.DirOptions{PreserveOwner: true}, Platforms: []ocispec.Platform{amd64}, Compression: layout.CompressionZstd,
	})
	layertest.Must(t, err)
	if len(res.Images) != 1 || res.Images[0].Platform.Architecture != "amd64" {
		t.Fatalf("changed %+v", res.Images)
	}
	if mt := res.Layers[0].Descriptor.MediaType; mt != ocispec.MediaTypeImageLayerZstd {
		t.Errorf("media type %s", mt)
	}
	for _, e := range layerEntries(t, f.l, res.Layers[0].Descriptor) {
		if !strings.Contains(e, " 1234:5678 "+at.Format(time.RFC3339)) {
			t.Errorf("entry %q: want owner 1234:5678 and the mtime kept", e)
		}
	}
	if f.image(t, res.Root, arm64).Descriptor.Digest != f.manifests[1].Digest {
		t.Errorf("arm64 changed")
	}
}

func TestAppendRefusesAndWritesNothing(t *testing.T) {
	f := newFixture(t)
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	layertest.Must(t, os.WriteFile(notTar, []byte(strings.Repeat("not a tar\n", 100)), 0o644))
	blobs := countBlobs(t, f.dir)
	_, err := mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: notTar}}, mutate.AppendOptions{})
	if !errors.Is(err, layout.ErrNotTar) || !strings.Contains(err.Error(), notTar) {
		t.Errorf("got %v, want ErrNotTar naming %s", err, notTar)
	}
	_, err = mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: filepath.Join(f.dir, "missing")}}, mutate.AppendOptions{})
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want ErrNotExist", err)
	}
	if n := countBlobs(t, f.dir); n != blobs {
		t.Errorf("%d blobs, had %d", n, blobs)
	}
}

// The same directory gives the same layer; Base annotations are set.
func TestAppendReproducible(t *testing.T) {
	f := newFixture(t)
	dir := appendDir(t, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := mutate.AppendOptions{Created: &created, Base: &mutate.Base{Name: "example.com/base:1", Descriptor: f.index}}
	a, err := mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: dir}}, opts)
	layertest.Must(t, err)
	b, err := mutate.Append(context.Background(), f.l, f.index, []mutate.Source{{Path: dir}}, opts)
	layertest.Must(t, err)
	if a.Root.Digest != b.Root.Digest {
		t.Errorf("two appends of the same directory: %s, %s", a.Root.Digest, b.Root.Digest)
	}
	img := f.image(t, a.Root, arm64)
	if img.Manifest.Annotations[ocispec.AnnotationBaseImageDigest] != f.index.Digest.String() || img.Manifest.Annotations[ocispec.AnnotationBaseImageName] != "example.com/base:1" {
		t.Errorf("annotations %v", img.Manifest.Annotations)
	}
}

func countBlobs(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	layertest.Must(t, err)
	return len(ents)
}
