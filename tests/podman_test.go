package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
)

// podman runs podman with storage private to the test, so that nothing
// outside the test's directories changes.
func podman(t testing.TB, root string, args ...string) string {
	t.Helper()
	base := []string{
		"--root", filepath.Join(root, "storage"), "--runroot", filepath.Join(root, "run"),
		"--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs",
	}
	return mustRun(t, "podman", append(base, args...)...)
}

// podmanRoot makes a private podman storage directory, removed after the
// test (podman's vfs layers are plain directories).
func podmanRoot(t testing.TB) string {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp("", "strata-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unmountUnder(dir)
		os.RemoveAll(dir)
	})
	return dir
}

// TestPodmanLoadSave loads strata's docker-archives and oci-archives into
// podman under their names, and reads podman save's archives (docker and
// OCI formats) back with podman's image ID as the config digest.
func TestPodmanLoadSave(t *testing.T) {
	root := podmanRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	a := makeImage(t, src, "podman-a", "linux/amd64", "", "example.com/strata/pa:1")
	makeImage(t, src, "podman-b", "linux/amd64", "", "example.com/strata/pb:1")

	dockerArchive := filepath.Join(dir, "d.tar")
	strata(t, "save", "-o", dockerArchive, src+":example.com/strata/pa:1", src+":example.com/strata/pb:1")
	out := podman(t, root, "load", "-i", dockerArchive)
	for _, want := range []string{"example.com/strata/pa:1", "example.com/strata/pb:1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("podman load did not load %s:\n%s", want, out)
		}
	}
	l, err := layout.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.ReadImage(a.Desc)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(podman(t, root, "image", "inspect", "--format", "{{.Id}}", "example.com/strata/pa:1"))
	if id != img.Manifest.Config.Digest.Encoded() {
		t.Fatalf("podman image id %s, want config %s", id, img.Manifest.Config.Digest)
	}

	ociArchive := filepath.Join(dir, "o.tar")
	strata(t, "copy", "oci:"+src+":example.com/strata/pa:1", "oci-archive:"+ociArchive+":example.com/strata/oci:1")
	out = podman(t, root, "load", "-i", ociArchive)
	if !strings.Contains(out, "example.com/strata/oci:1") {
		t.Fatalf("podman load of an oci-archive:\n%s", out)
	}

	for _, format := range []string{"docker-archive", "oci-archive"} {
		t.Run("podman save "+format, func(t *testing.T) {
			saved := filepath.Join(t.TempDir(), "saved.tar")
			podman(t, root, "save", "--format", format, "-o", saved, "example.com/strata/pa:1")
			dst := filepath.Join(t.TempDir(), "dst")
			strata(t, "load", saved, dst)
			fsckClean(t, dst)
			dl, err := layout.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer dl.Close()
			ents, err := dl.List()
			if err != nil || len(ents) != 1 {
				t.Fatalf("loaded %v %v", ents, err)
			}
			got, err := dl.ReadImage(ents[0].Descriptor)
			if err != nil {
				t.Fatal(err)
			}
			if got.Manifest.Config.Digest.Encoded() != id {
				t.Fatalf("config %s, podman's id %s", got.Manifest.Config.Digest, id)
			}
			if format == "docker-archive" && !strings.Contains(ents[0].Name, "example.com/strata/pa:1") {
				t.Fatalf("name %q", ents[0].Name)
			}
		})
	}
}
