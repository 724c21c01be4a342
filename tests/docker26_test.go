package tests

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/archive"
)

// The images these tests build, and what their commands print.
const (
	d26Layered      = "example.com/strata/layered:3"
	d26LayeredShort = "layered" // docker shows it as layered:latest
	d26Other        = "example.com/strata/other:1"
	d26LayeredOut   = "second layer\nthird layer\nmarker gone\n"
	d26OtherOut     = "other\n"
)

// docker26Stores are the two image stores of Docker 25+: the classic
// graph driver (Debian's default) and containerd's, which loads the OCI
// part of an archive by its io.containerd.image.name annotations.
var docker26Stores = []struct {
	name       string
	containerd bool
}{
	{"graphdriver", false},
	{"containerd-store", true},
}

// d26Image builds, with strata alone, a three-layer image in a new layout
// (import of a busybox rootfs, then two vfs commits: a file added and one
// deleted, then a directory with a hard link) named d26Layered and
// d26LayeredShort, and a one-layer image named d26Other. It returns the
// layout.
func d26Image(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	l := filepath.Join(work, "layout")
	r := runCmd(t, busyboxTar(t, "base"), strataBin, "--quiet", "import",
		"-c", `CMD ["/bin/busybox", "cat", "/etc/marker"]`, "-", l+":"+d26Layered)
	if r.Code != 0 {
		t.Fatalf("strata import: exit %d: %s", r.Code, r.Stderr)
	}
	bundle, store := filepath.Join(work, "bundle"), filepath.Join(work, "store")
	strata(t, "unpack", "--root", store, l+":"+d26Layered, bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	cmtMust(t, os.WriteFile(filepath.Join(rootfs, "etc/added"), []byte("second layer\n"), 0o644))
	cmtMust(t, os.Remove(filepath.Join(rootfs, "etc/marker")))
	strata(t, "commit", "-m", "second", bundle, l+":"+d26Layered)
	cmtMust(t, os.MkdirAll(filepath.Join(rootfs, "opt/data"), 0o755))
	cmtMust(t, os.WriteFile(filepath.Join(rootfs, "opt/data/file"), []byte("third layer\n"), 0o644))
	cmtMust(t, os.Link(filepath.Join(rootfs, "opt/data/file"), filepath.Join(rootfs, "opt/data/link")))
	strata(t, "commit", "-m", "third",
		"-c", `CMD ["/bin/sh", "-c", "cat /etc/added /opt/data/link; test -e /etc/marker || echo marker gone"]`,
		bundle, l+":"+d26Layered)
	strata(t, "tag", l+":"+d26Layered, d26LayeredShort)
	makeImage(t, l, "other", "linux/amd64", "", d26Other)
	if img := d26Read(t, l, d26Layered); len(img.Manifest.Layers) != 3 {
		t.Fatalf("%s has %d layers, want 3", d26Layered, len(img.Manifest.Layers))
	}
	return l
}

// d26Read reads the image ref names in the layout at dir.
func d26Read(t testing.TB, dir, ref string) *layout.Image {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	img, err := l.Image(ref, nil)
	if err != nil {
		t.Fatalf("%s:%s: %v", dir, ref, err)
	}
	return img
}

// pipeline runs a | b, the two processes joined by a pipe as a shell
// joins them, and returns b's stdout; both must exit 0.
func pipeline(t testing.TB, a, b *exec.Cmd) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var aErr, bOut, bErr bytes.Buffer
	a.Stdout, a.Stderr = w, &aErr
	b.Stdin, b.Stdout, b.Stderr = r, &bOut, &bErr
	if err := a.Start(); err != nil {
		t.Fatalf("start %s: %v", a.Path, err)
	}
	if err := b.Start(); err != nil {
		w.Close()
		r.Close()
		_ = a.Wait()
		t.Fatalf("start %s: %v", b.Path, err)
	}
	// Only the children hold the pipe now: b sees EOF when a exits, and a
	// a broken pipe if b gives up.
	w.Close()
	r.Close()
	errA, errB := a.Wait(), b.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("%s | %s: %v, %v\n%s stderr: %s\n%s stderr: %s", strings.Join(a.Args, " "), strings.Join(b.Args, " "),
			errA, errB, a.Path, aErr.String(), b.Path, bErr.String())
	}
	return bOut.String()
}

// d26Loaded checks docker load's report and docker images for names.
func d26Loaded(t testing.TB, e *dockerEngine, out string, names ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(e.must(t, "images", "--format", "{{.Repository}}:{{.Tag}}")), "\n") {
		have[line] = true
	}
	for _, n := range names {
		if !strings.Contains(out, "Loaded image: "+n+"\n") {
			t.Errorf("docker %s load did not report %s:\n%s", e.version, n, out)
		}
		if !have[n] {
			t.Errorf("docker %s images does not list %s: %v", e.version, n, have)
		}
	}
}

// d26Run checks what docker run of name prints.
func d26Run(t testing.TB, e *dockerEngine, name, want string) {
	t.Helper()
	if got := e.must(t, "run", "--rm", "--network=none", name); got != want {
		t.Fatalf("docker %s run %s: %q, want %q", e.version, name, got, want)
	}
}

// d26Reset removes every image from the engine, so that the next load
// has to bring everything.
func d26Reset(t testing.TB, e *dockerEngine) {
	t.Helper()
	ids := strings.Fields(e.must(t, "images", "-q", "--no-trunc"))
	if len(ids) > 0 {
		e.must(t, append([]string{"rmi", "-f"}, ids...)...)
	}
	if left := strings.TrimSpace(e.must(t, "images", "-q")); left != "" {
		t.Fatalf("docker %s still has images after rmi: %s", e.version, left)
	}
}

// TestDocker26LoadRun writes archives of a three-layer image and a second
// image that Docker 26 loads under their names and runs, with both of its
// image stores: the default docker-archive (OCI layout + manifest.json),
// an untagged image, one with Docker media types, an oci-archive
// (the containerd store reads those), and an archive streamed from
// strata save's stdout into docker load's stdin.
func TestDocker26LoadRun(t *testing.T) {
	src := d26Image(t)
	layered := d26Read(t, src, d26Layered)
	for _, store := range docker26Stores {
		t.Run(store.name, func(t *testing.T) {
			t.Parallel()
			e := startDocker26(t, store.containerd)
			dir := t.TempDir()

			// The default archive: two images, one of them under two names.
			two := filepath.Join(dir, "two.tar")
			strata(t, "save", "-o", two, src+":"+d26Layered, src+":"+d26LayeredShort, src+":"+d26Other)
			out := e.must(t, "load", "-i", two)
			d26Loaded(t, e, out, d26Layered, d26LayeredShort+":latest", d26Other)
			d26Run(t, e, d26Layered, d26LayeredOut)
			d26Run(t, e, d26LayeredShort, d26LayeredOut)
			d26Run(t, e, d26Other, d26OtherOut)
			// The graph driver names images by config digest, the
			// containerd store by manifest digest: either way, the image
			// strata wrote, unchanged.
			want := layered.Manifest.Config.Digest
			if e.containerdStore {
				want = layered.Descriptor.Digest
			}
			if id := strings.TrimSpace(e.must(t, "image", "inspect", "--format", "{{.Id}}", d26Layered)); digest.Digest(id) != want {
				t.Fatalf("docker %s image id %s, want %s", e.version, id, want)
			}

			// An image saved by digest has no name: docker loads it by
			// its ID, and runs it by that ID.
			d26Reset(t, e)
			untagged := filepath.Join(dir, "untagged.tar")
			strata(t, "save", "-o", untagged, src+":@"+layered.Descriptor.Digest.String())
			if out := e.must(t, "load", "-i", untagged); out != "Loaded image ID: "+want.String()+"\n" {
				t.Fatalf("docker %s load of an untagged image: %q, want ID %s", e.version, out, want)
			}
			d26Run(t, e, want.String(), d26LayeredOut)

			// Docker schema2 media types.
			d26Reset(t, e)
			schema2 := filepath.Join(dir, "schema2.tar")
			strata(t, "save", "--media-types", "docker", "-o", schema2, src+":"+d26Layered)
			d26Loaded(t, e, e.must(t, "load", "-i", schema2), d26Layered)
			d26Run(t, e, d26Layered, d26LayeredOut)

			// strata save -o - | docker load.
			d26Reset(t, e)
			out = pipeline(t,
				exec.Command(strataBin, "--quiet", "save", "-o", "-", src+":"+d26Layered, src+":"+d26Other),
				e.command("load"))
			d26Loaded(t, e, out, d26Layered, d26Other)
			d26Run(t, e, d26Layered, d26LayeredOut)
			d26Run(t, e, d26Other, d26OtherOut)

			// An oci-archive has no manifest.json: only the containerd
			// store loads it (the graph driver reads manifest.json alone).
			if e.containerdStore {
				d26Reset(t, e)
				oci := filepath.Join(dir, "oci.tar")
				strata(t, "save", "--format", "oci", "-o", oci, src+":"+d26Layered, src+":"+d26Other)
				d26Loaded(t, e, e.must(t, "load", "-i", oci), d26Layered, d26Other)
				d26Run(t, e, d26Layered, d26LayeredOut)
				d26Run(t, e, d26Other, d26OtherOut)
			}
		})
	}
}

// TestDocker26SaveLoad reads what Docker 26's docker save writes (an OCI
// layout with manifest.json beside it), from a file and from a pipe, with
// both of its image stores: the images keep their config, diffIDs and
// names (a second tag docker added included), unpack to the files they
// hold, and go back into Docker from strata's archive.
func TestDocker26SaveLoad(t *testing.T) {
	src := d26Image(t)
	layered := d26Read(t, src, d26Layered)
	for _, store := range docker26Stores {
		t.Run(store.name, func(t *testing.T) {
			t.Parallel()
			e := startDocker26(t, store.containerd)
			dir := t.TempDir()
			archivePath := filepath.Join(dir, "strata.tar")
			strata(t, "save", "-o", archivePath, src+":"+d26Layered)
			e.must(t, "load", "-i", archivePath)
			const retag = "strata-retagged:v2"
			e.must(t, "tag", d26Layered, retag)

			saved := filepath.Join(dir, "saved.tar")
			e.must(t, "save", "-o", saved, d26Layered, retag)
			list := mustRun(t, "tar", "-tf", saved)
			for _, f := range []string{"manifest.json", "index.json", "oci-layout"} {
				if !strings.Contains("\n"+list, "\n"+f+"\n") {
					t.Fatalf("docker %s save wrote no %s; Docker 25+ writes an OCI layout beside manifest.json:\n%s", e.version, f, list)
				}
			}
			dst := filepath.Join(dir, "dst")
			strata(t, "load", saved, dst)
			fsckClean(t, dst)
			d26Same(t, e, dst, layered, retag)

			// docker save | strata load -, into a layout of its own.
			piped := filepath.Join(dir, "piped")
			pipeline(t, e.command("save", d26Layered, retag), exec.Command(strataBin, "--quiet", "load", "-", piped))
			fsckClean(t, piped)
			d26Same(t, e, piped, layered, retag)

			// And back: strata's archive of what docker saved (in the graph
			// driver's case, uncompressed OCI layers docker made) loads
			// and runs under both names.
			d26Reset(t, e)
			again := filepath.Join(dir, "again.tar")
			strata(t, "save", "-o", again, dst+":"+d26Layered, dst+":docker.io/library/"+retag)
			d26Loaded(t, e, e.must(t, "load", "-i", again), d26Layered, retag)
			d26Run(t, e, d26Layered, d26LayeredOut)
			d26Run(t, e, retag, d26LayeredOut)

			// The files the image holds, unpacked from what docker saved.
			bundle := filepath.Join(dir, "bundle")
			strata(t, "unpack", "--root", filepath.Join(dir, "store"), dst+":"+d26Layered, bundle)
			rootfs := filepath.Join(bundle, "rootfs")
			for f, want := range map[string]string{"etc/added": "second layer\n", "opt/data/link": "third layer\n"} {
				if got, err := os.ReadFile(filepath.Join(rootfs, f)); err != nil || string(got) != want {
					t.Errorf("unpacked %s: %q, %v; want %q", f, got, err, want)
				}
			}
			a, errA := os.Stat(filepath.Join(rootfs, "opt/data/file"))
			b, errB := os.Stat(filepath.Join(rootfs, "opt/data/link"))
			if errA != nil || errB != nil || !os.SameFile(a, b) {
				t.Errorf("unpacked opt/data/link is not a hard link of opt/data/file: %v %v", errA, errB)
			}
			if _, err := os.Lstat(filepath.Join(rootfs, "etc/marker")); !os.IsNotExist(err) {
				t.Errorf("unpacked etc/marker, deleted by the second layer: %v", err)
			}
		})
	}
}

// d26Same checks the images docker saved, as loaded into the layout at
// dir, against the image strata built: the same config bytes and diffIDs
// under both names (the containerd store also keeps the manifest), and
// names docker reads as it wrote them.
func d26Same(t testing.TB, e *dockerEngine, dir string, want *layout.Image, retag string) {
	t.Helper()
	got := names(t, dir)
	var tags []string
	for _, n := range got {
		tags = append(tags, archive.DockerTag(n))
	}
	sort.Strings(tags)
	if wantTags := []string{d26Layered, retag}; !reflect.DeepEqual(tags, wantTags) {
		t.Fatalf("docker %s save loaded as names %v, want %v", e.version, got, wantTags)
	}
	for _, n := range got {
		img := d26Read(t, dir, n)
		if img.Manifest.Config.Digest != want.Manifest.Config.Digest || !bytes.Equal(img.ConfigRaw, want.ConfigRaw) {
			t.Errorf("%s: config %s, want %s", n, img.Manifest.Config.Digest, want.Manifest.Config.Digest)
		}
		if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, want.Config.RootFS.DiffIDs) {
			t.Errorf("%s: diffIDs %v, want %v", n, img.Config.RootFS.DiffIDs, want.Config.RootFS.DiffIDs)
		}
		if e.containerdStore && img.Descriptor.Digest != want.Descriptor.Digest {
			t.Errorf("%s: manifest %s, want %s: the containerd store keeps manifests as loaded", n, img.Descriptor.Digest, want.Descriptor.Digest)
		}
		if id := strings.TrimSpace(e.must(t, "image", "inspect", "--format", "{{.Id}}", archive.DockerTag(n))); e.containerdStore && digest.Digest(id) != img.Descriptor.Digest ||
			!e.containerdStore && digest.Digest(id) != img.Manifest.Config.Digest {
			t.Errorf("%s: docker %s image id %s, strata has manifest %s config %s", n, e.version, id, img.Descriptor.Digest, img.Manifest.Config.Digest)
		}
	}
}
