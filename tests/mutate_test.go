package tests

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

// Tests of strata mutate, append and rebase on a two-platform image of
// several layers: what each writes, that strata and umoci unpack the
// results to the expected trees, that skopeo and crane read them, and
// that rebase makes what crane rebase makes.

var (
	mutAMD64 = ocispec.Platform{OS: "linux", Architecture: "amd64"}
	mutARM64 = ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	mutPlats = []ocispec.Platform{mutAMD64, mutARM64}
)

// mutLayers are three layers of a platform's image: files, a binary
// directory, a whiteout and an owned file.
func mutLayers(arch string) [][]byte {
	return [][]byte{
		layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/os-release", "ID="+arch+"\n", 0o644), layertest.Dir("usr", 0o755), layertest.Dir("usr/bin", 0o755)),
		layertest.Tar(layertest.Dir("usr", 0o755), layertest.Dir("usr/bin", 0o755), layertest.File("usr/bin/tool", "#!/bin/sh\necho "+arch+"\n", 0o755),
			layertest.Owned(layertest.File("usr/bin/owned", "owned\n", 0o640), 1000, 1000)),
		layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/motd", arch+"\n", 0o644), layertest.Whiteout("etc/os-release")),
	}
}

// mutImage builds, in a new layout, the two-platform image "v1" whose
// platforms' layers are layers(arch), and returns the layout.
func mutImage(t *testing.T, layers func(arch string) [][]byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	var imgs []layertest.PlatformImage
	for _, p := range mutPlats {
		imgs = append(imgs, layertest.PlatformImage{Platform: p, Layers: layers(p.Architecture), Cmd: []string{"/usr/bin/tool"},
			Env: []string{"PATH=/usr/bin:/bin"}, Labels: map[string]string{"org.example.keep": "1"}})
	}
	if _, _, err := layertest.BuildIndex(dir, "v1", imgs...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mutRead reads the image of platform p that ref names.
func mutRead(t *testing.T, dir, ref string, p ocispec.Platform) *layout.Image {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	img, err := l.Image(ref, &p)
	if err != nil {
		t.Fatalf("%s:%s (%s): %v", dir, ref, platforms.Format(p), err)
	}
	return img
}

// mutLayerFiles hashes the blob files of every layer of ref: their
// bytes, read from disk.
func mutLayerFiles(t *testing.T, dir, ref string) map[digest.Digest]string {
	t.Helper()
	out := map[digest.Digest]string{}
	for _, p := range mutPlats {
		for _, d := range mutRead(t, dir, ref, p).Manifest.Layers {
			out[d.Digest] = layertest.FileSum(t, filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
		}
	}
	return out
}

// mutTrees unpacks platform p of ref with strata (vfs) and umoci, checks
// that they agree and returns the tree.
func mutTrees(t *testing.T, dir, ref string, p ocispec.Platform) map[string]string {
	t.Helper()
	work := t.TempDir()
	ps := platforms.Format(p)
	strata(t, "unpack", "--root", filepath.Join(work, "store"), "--platform", ps, dir+":"+ref, filepath.Join(work, "strata"))
	got := layertest.DescribeTree(t, filepath.Join(work, "strata", "rootfs"))
	// umoci reads one manifest: give it the platform's alone.
	one := filepath.Join(work, "one")
	strata(t, "copy", "--platform", ps, "oci:"+dir+":"+ref, "oci:"+one+":x")
	mustRun(t, "umoci", "unpack", "--image", one+":x", filepath.Join(work, "umoci"))
	layertest.DiffTrees(t, "strata unpack "+ps, got, "umoci unpack "+ps, layertest.DescribeTree(t, filepath.Join(work, "umoci", "rootfs")))
	return got
}

// mutIndexState is index.json and the list of blobs: what a failed
// command must leave as it was.
func mutIndexState(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return fmt.Sprintf("%x %s", sha256.Sum256(b), strings.Join(names, ","))
}

func mutDigest(t *testing.T, out string) digest.Digest {
	t.Helper()
	d := digest.Digest(strings.TrimSpace(out))
	if err := d.Validate(); err != nil {
		t.Fatalf("printed %q, not a digest", out)
	}
	return d
}

func TestMutateCLI(t *testing.T) {
	needRoot(t)
	dir := mutImage(t, mutLayers)
	before := mutLayerFiles(t, dir, "v1")
	want := map[string]map[string]string{}
	for _, p := range mutPlats {
		want[p.Architecture] = mutTrees(t, dir, "v1", p)
	}
	old := regResolve(t, dir, "v1")

	out := strata(t, "mutate", dir+":v1",
		"--label", "org.example.new=yes", "--label", "org.example.keep-",
		"--env", "MODE=prod", "--entrypoint", `["/usr/bin/tool", "-v"]`, "--user", "1000:1000", "--workdir", "/srv",
		"-c", "EXPOSE 8080", "--annotation", "org.example.m=1", "--annotation", "index:org.example.i=2",
		"--created", "2024-01-02T03:04:05Z")
	d := mutDigest(t, out)
	if got := regResolve(t, dir, "v1"); got != d || d == old {
		t.Fatalf("v1 is %s after mutate printed %s (was %s)", got, d, old)
	}
	// Every platform changed, layers untouched, byte for byte.
	for _, p := range mutPlats {
		img := mutRead(t, dir, "v1", p)
		c := img.Config.Config
		if !slices.Equal(c.Entrypoint, []string{"/usr/bin/tool", "-v"}) || c.Cmd != nil || c.User != "1000:1000" || c.WorkingDir != "/srv" ||
			!slices.Equal(c.Env, []string{"PATH=/usr/bin:/bin", "MODE=prod"}) || !reflect.DeepEqual(c.Labels, map[string]string{"org.example.new": "yes"}) {
			t.Errorf("%s: config %+v", p.Architecture, c)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok || !img.Config.Created.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("%s: ports %v created %v", p.Architecture, c.ExposedPorts, img.Config.Created)
		}
		if img.Manifest.Annotations["org.example.m"] != "1" {
			t.Errorf("%s: annotations %v", p.Architecture, img.Manifest.Annotations)
		}
	}
	if got := mutLayerFiles(t, dir, "v1"); !reflect.DeepEqual(got, before) {
		t.Errorf("layer blobs changed:\n%v\n%v", got, before)
	}
	strata(t, "fsck", dir)
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", "--raw", "oci:"+dir+":v1")), &idx); err != nil || idx.Annotations["org.example.i"] != "2" || len(idx.Manifests) != 2 {
		t.Errorf("skopeo inspect --raw: %v %+v", err, idx)
	}
	for _, p := range mutPlats {
		var info struct {
			Labels       map[string]string
			Architecture string
		}
		raw := mustRun(t, "skopeo", "--override-arch", p.Architecture, "--override-variant", p.Variant, "inspect", "oci:"+dir+":v1")
		if err := json.Unmarshal([]byte(raw), &info); err != nil || info.Labels["org.example.new"] != "yes" || info.Architecture != p.Architecture {
			t.Errorf("skopeo inspect %s: %v %s", p.Architecture, err, raw)
		}
		layertest.DiffTrees(t, "original", want[p.Architecture], "mutated", mutTrees(t, dir, "v1", p))
	}

	// One platform; the result under another name; the source stays.
	d2 := mutDigest(t, strata(t, "mutate", "--platform", "linux/arm64", dir+":v1", "arm-only", "--label", "arm=1"))
	if regResolve(t, dir, "v1") != d || regResolve(t, dir, "arm-only") != d2 {
		t.Fatalf("names after mutate to NEWREF")
	}
	if mutRead(t, dir, "arm-only", mutAMD64).Descriptor.Digest != mutRead(t, dir, "v1", mutAMD64).Descriptor.Digest {
		t.Errorf("--platform linux/arm64 changed amd64")
	}
	if mutRead(t, dir, "arm-only", mutARM64).Config.Config.Labels["arm"] != "1" {
		t.Errorf("--platform linux/arm64 did not change arm64")
	}

	// By digest: the new image is added untagged, the old one stays.
	d3 := mutDigest(t, strata(t, "mutate", dir+":@"+d.String(), "--user", "root"))
	if regResolve(t, dir, "@"+d.String()) != d || regResolve(t, dir, "@"+d3.String()) != d3 || regResolve(t, dir, "v1") != d {
		t.Errorf("mutate by digest moved a name")
	}

	// Refused before anything is written.
	state := mutIndexState(t, dir)
	for _, args := range [][]string{
		{"mutate", dir + ":v1", "-c", "RUN true"},
		{"mutate", dir + ":v1", "--label", "novalue"},
		{"mutate", dir + ":v1", "--platform", "linux/s390x", "--user", "x"},
		{"mutate", dir + ":v1"},
		{"mutate", dir + ":nope", "--user", "x"},
	} {
		r := strataFail(t, args...)
		if !strings.Contains(r.Stderr, "strata: ") {
			t.Errorf("%v: stderr %q", args, r.Stderr)
		}
	}
	if got := mutIndexState(t, dir); got != state {
		t.Errorf("a failed mutate changed the layout")
	}
}

// mutAddDir makes a directory to append, with files owned by 1234:5678
// and fixed mtimes, and the tar layer strata append must make of it (as
// root's, mtimes as they are).
func mutAddDir(t *testing.T) (string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "add")
	at := time.Date(2022, 2, 2, 2, 2, 2, 0, time.UTC)
	files := []struct {
		name, body string
		mode       os.FileMode
	}{
		{"srv/", "", 0o750},
		{"srv/app/", "", 0o755},
		{"srv/app/run", "#!/bin/sh\necho app\n", 0o755},
		{"srv/app/data", "data\n", 0o600},
	}
	var ents []layertest.Entry
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if strings.HasSuffix(f.name, "/") {
			if err := os.MkdirAll(p, f.mode); err != nil {
				t.Fatal(err)
			}
			ents = append(ents, layertest.Dir(strings.TrimSuffix(f.name, "/"), int64(f.mode)))
		} else {
			if err := os.WriteFile(p, []byte(f.body), f.mode); err != nil {
				t.Fatal(err)
			}
			ents = append(ents, layertest.File(f.name, f.body, int64(f.mode)))
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(p, 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	for i := len(files) - 1; i >= 0; i-- {
		if err := os.Chtimes(filepath.Join(dir, files[i].name), at, at); err != nil {
			t.Fatal(err)
		}
	}
	for i := range ents {
		ents[i].Mtime = at
	}
	return dir, layertest.Tar(ents...)
}

func TestAppendCLI(t *testing.T) {
	needRoot(t)
	dir := mutImage(t, mutLayers)
	add, addTar := mutAddDir(t)
	extra := layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/extra", "extra\n", 0o644), layertest.Whiteout("etc/motd"))
	tarball := filepath.Join(t.TempDir(), "extra.tar.gz")
	if err := os.WriteFile(tarball, layertest.Gzip(extra), 0o644); err != nil {
		t.Fatal(err)
	}
	before := mutLayerFiles(t, dir, "v1")

	d := mutDigest(t, strata(t, "append", "--timestamp", "2025-01-01T00:00:00Z", "-m", "added", dir+":v1", add, tarball, dir+":v2"))
	if regResolve(t, dir, "v2") != d {
		t.Fatalf("v2 is not the printed digest")
	}
	// What the image must unpack to: the same layers, built by hand.
	ref := mutImage(t, func(arch string) [][]byte { return append(mutLayers(arch), addTar, extra) })
	for _, p := range mutPlats {
		img := mutRead(t, dir, "v2", p)
		if n := len(img.Manifest.Layers); n != 5 {
			t.Fatalf("%s: %d layers", p.Architecture, n)
		}
		if ly := img.Manifest.Layers[4]; ly.MediaType != ocispec.MediaTypeImageLayerGzip || ly.Digest.Encoded() != layertest.FileSum(t, tarball) {
			t.Errorf("%s: the gzip tarball is not stored as it is: %+v", p.Architecture, ly)
		}
		h := img.Config.History
		if len(h) != 5 || h[3].CreatedBy != "strata append "+add || h[4].CreatedBy != "strata append "+tarball || h[4].Comment != "added" {
			t.Errorf("%s: history %+v", p.Architecture, h)
		}
		layertest.DiffTrees(t, "built by hand", mutTrees(t, ref, "v1", p), "appended", mutTrees(t, dir, "v2", p))
	}
	if got := mutLayerFiles(t, dir, "v1"); !reflect.DeepEqual(got, before) {
		t.Errorf("the source image's layers changed")
	}
	skopeoInspect(t, "oci:"+dir+":v2", "--override-arch", "arm64")

	// --preserve-owner, one platform, in place: the name moves.
	d3 := mutDigest(t, strata(t, "append", "--preserve-owner", "--platform", "linux/amd64", dir+":v2", add))
	if regResolve(t, dir, "v2") != d3 {
		t.Fatalf("v2 did not move")
	}
	root := filepath.Join(t.TempDir(), "b")
	strata(t, "unpack", "--root", filepath.Join(t.TempDir(), "store"), "--platform", "linux/amd64", dir+":v2", root)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "rootfs", "srv", "app", "run"), &st); err != nil || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("--preserve-owner: %v, owner %d:%d", err, st.Uid, st.Gid)
	}
	if n := len(mutRead(t, dir, "v2", mutARM64).Manifest.Layers); n != 5 {
		t.Errorf("arm64 has %d layers: --platform linux/amd64 changed it", n)
	}

	// To a docker-archive, which docker and skopeo read.
	arch := filepath.Join(t.TempDir(), "out.tar")
	strata(t, "append", "--platform", "linux/arm64", dir+":v1", add, "docker-archive:"+arch+":example.com/app:v3")
	var info struct {
		Architecture string
		Layers       []string
	}
	if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", "docker-archive:"+arch)), &info); err != nil || info.Architecture != "arm64" || len(info.Layers) != 4 {
		t.Errorf("skopeo inspect docker-archive: %v %+v", err, info)
	}

	// A file that is not a tar: refused, nothing written.
	state := mutIndexState(t, dir)
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notTar, []byte(strings.Repeat("notes\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := strataFail(t, "append", dir+":v1", add, notTar, dir+":v4"); !strings.Contains(r.Stderr, notTar) {
		t.Errorf("stderr %q does not name %s", r.Stderr, notTar)
	}
	if r := strataFail(t, "append", dir+":v1", add, "v4"); r.Code != 2 || !strings.Contains(r.Stderr, dir+":v4") {
		t.Errorf("a bare NEWREF: exit %d, %q", r.Code, r.Stderr)
	}
	if got := mutIndexState(t, dir); got != state {
		t.Errorf("a failed append changed the layout")
	}
}

// An archive is changed in place, its other images kept; or read from
// and written to a layout.
func TestMutateArchives(t *testing.T) {
	needRoot(t)
	dir := mutImage(t, mutLayers)
	other := filepath.Join(t.TempDir(), "other")
	if err := layertest.BuildImage(other, "v1", layertest.Image{Layers: [][]byte{layertest.Tar(layertest.File("x", "x\n", 0o644))}}); err != nil {
		t.Fatal(err)
	}
	strata(t, "copy", "oci:"+other+":v1", "oci:"+dir+":other")
	arch := filepath.Join(t.TempDir(), "images.tar")
	strata(t, "save", "--format", "oci-archive", "-o", arch, dir+":v1", dir+":other")

	strata(t, "mutate", "oci-archive:"+arch+":v1", "--label", "in=archive")
	back := filepath.Join(t.TempDir(), "back")
	strata(t, "load", arch, back)
	if got := names(t, back); len(got) != 2 {
		t.Fatalf("names after an in-place mutate: %v", got)
	}
	for _, p := range mutPlats {
		if mutRead(t, back, "v1", p).Config.Config.Labels["in"] != "archive" {
			t.Errorf("%s: label not set", p.Architecture)
		}
	}
	var info struct{ Labels map[string]string }
	if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "--override-arch", "arm64", "inspect", "oci-archive:"+arch+":v1")), &info); err != nil || info.Labels["in"] != "archive" {
		t.Errorf("skopeo inspect oci-archive: %v %+v", err, info)
	}
	// From the archive into a new layout, the archive unchanged.
	sum := layertest.FileSum(t, arch)
	out := filepath.Join(t.TempDir(), "out")
	strata(t, "append", "oci-archive:"+arch+":v1", layertestTarFile(t), "oci:"+out+":v2")
	if layertest.FileSum(t, arch) != sum {
		t.Errorf("the source archive changed")
	}
	for _, p := range mutPlats {
		if n := len(mutRead(t, out, "v2", p).Manifest.Layers); n != 4 {
			t.Errorf("%s: %d layers", p.Architecture, n)
		}
	}
	strata(t, "fsck", "--diffids", out)
	if r := strataFail(t, "mutate", "oci-archive:"+arch, "--user", "x"); !strings.Contains(r.Stderr, "2 images") {
		t.Errorf("an archive of two images, none named: %q", r.Stderr)
	}
	if layertest.FileSum(t, arch) != sum {
		t.Errorf("a refused mutate changed the archive")
	}
}

// layertestTarFile writes a small tar layer to a file and returns its path.
func layertestTarFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(p, layertest.Tar(layertest.File("added", "added\n", 0o644)), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
