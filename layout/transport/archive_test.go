package transport

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
)

// The temporary file of an archive being written is locked by its writer;
// the next write of the archive removes those of killed writers (nobody
// holds them), and keeps a live writer's.
func TestArchiveTempsOfKilledWritersGo(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	l, err := layout.Init(src)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := l.PutLayer(context.Background(), bytes.NewReader(emptyTar()))
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(layer.DiffID); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{layer.Descriptor}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(md, "v1"); err != nil {
		t.Fatal(err)
	}
	l.Close()

	file := filepath.Join(dir, "app.tar")
	dead := filepath.Join(dir, ".app.tar.tmp-111")
	live := filepath.Join(dir, ".app.tar.tmp-222")
	other := filepath.Join(dir, ".other.tar.tmp-333")
	for _, p := range []string{dead, live, other} {
		if err := os.WriteFile(p, []byte("partial archive"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lf, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	s, err := ParseSource("oci:" + src + ":v1")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDestination("docker-archive:" + file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Copy(context.Background(), s, d, CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{dead: false, live: true, other: true, file: true} {
		if _, err := os.Lstat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	// The writer held its own temporary file: a concurrent sweep could
	// not take it.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".app.tar.tmp-") && filepath.Join(dir, e.Name()) != live {
			t.Errorf("%s left behind", e.Name())
		}
	}
}

// emptyTar is a tar archive with one empty file.
func emptyTar() []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "empty", Typeflag: tar.TypeReg, Mode: 0o644})
	_ = tw.Close()
	return buf.Bytes()
}
