package tests

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// inspected is what strata inspect --json says of a reference: the name
// it was found under and the manifest's digest.
func inspected(t testing.TB, ref string) (name, dgst string) {
	t.Helper()
	var s struct {
		Name     string             `json:"name"`
		Manifest ocispec.Descriptor `json:"manifest"`
	}
	if err := json.Unmarshal([]byte(strata(t, "inspect", "--json", ref)), &s); err != nil {
		t.Fatal(err)
	}
	return s.Name, s.Manifest.Digest.String()
}

// TestNamesFromDocker: an image docker saves as ov1 loads into strata as
// docker.io/library/ov1:latest and is found by every spelling a docker
// user types; strata save names it so again, or as --name says, and
// docker loads it under that name.
func TestNamesFromDocker(t *testing.T) {
	e := startDockerd(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	img := makeImage(t, src, "names", "linux/amd64", "", "v1")

	// --name names the archive's image; docker shows that name.
	named := filepath.Join(dir, "named.tar")
	strata(t, "save", "--name", "example.com/strata/named:7", "-o", named, src+":v1")
	if out := e.must(t, "load", "-i", named); !strings.Contains(out, "Loaded image: example.com/strata/named:7") {
		t.Fatalf("docker load of a --name archive:\n%s", out)
	}
	// One --name per image.
	if r := strataFail(t, "save", "--name", "a:1", "--name", "b:1", "-o", filepath.Join(dir, "x.tar"), src+":v1"); r.Code != 2 {
		t.Fatalf("two names for one image: exit %d: %s", r.Code, r.Stderr)
	}

	// docker save of a short name, loaded: the full name is stored, and
	// ov1, ov1:latest and the full name all find it.
	e.must(t, "tag", "example.com/strata/named:7", "ov1")
	saved := filepath.Join(dir, "ov1.tar")
	e.must(t, "save", "-o", saved, "ov1")
	l := filepath.Join(dir, "l")
	strata(t, "load", saved, l)
	if got := names(t, l); !slices.Equal(got, []string{"docker.io/library/ov1:latest"}) {
		t.Fatalf("loaded names %v, want docker.io/library/ov1:latest", got)
	}
	want := ""
	for _, ref := range []string{"ov1", "ov1:latest", "docker.io/library/ov1:latest", "library/ov1"} {
		name, d := inspected(t, l+":"+ref)
		if name != "docker.io/library/ov1:latest" || (want != "" && d != want) {
			t.Fatalf("%s:%s is %s %s", l, ref, name, d)
		}
		want = d
	}
	if r := strataFail(t, "inspect", l+":ov2"); !strings.Contains(r.Stderr, "reference not found") {
		t.Fatalf("ov2: %s", r.Stderr)
	}

	// strata save of the short name writes the full one; docker reads it
	// back as ov1:latest.
	again := filepath.Join(dir, "again.tar")
	strata(t, "save", "-o", again, l+":ov1")
	e.must(t, "rmi", "ov1")
	if out := e.must(t, "load", "-i", again); !strings.Contains(out, "Loaded image: ov1:latest") {
		t.Fatalf("docker load of strata's save of ov1:\n%s", out)
	}

	// Loaded under a name of the user's, the archive's name is kept beside
	// it: the image is found by both, and saved under the full one (the
	// bare tag would have made it mine:latest).
	l2 := filepath.Join(dir, "l2")
	strata(t, "load", saved, l2+":mine")
	if got := names(t, l2); !slices.Equal(got, []string{"mine"}) {
		t.Fatalf("names %v, want mine", got)
	}
	if _, d := inspected(t, l2+":ov1"); d != want {
		t.Fatalf("%s:ov1 is %s, want %s", l2, d, want)
	}
	mine := filepath.Join(dir, "mine.tar")
	strata(t, "save", "-o", mine, l2+":mine")
	e.must(t, "rmi", "ov1")
	if out := e.must(t, "load", "-i", mine); !strings.Contains(out, "Loaded image: ov1:latest") {
		t.Fatalf("docker load of a save of mine:\n%s", out)
	}
	// An image that has only a bare tag keeps the old naming: v1:latest.
	bare := filepath.Join(dir, "bare.tar")
	strata(t, "save", "-o", bare, src+":v1")
	if out := e.must(t, "load", "-i", bare); !strings.Contains(out, "Loaded image: v1:latest") {
		t.Fatalf("docker load of a bare tag:\n%s", out)
	}

	// A short name two images could answer to is refused, naming both.
	strata(t, "tag", l+":ov1", "localhost/app:latest")
	strata(t, "tag", src+":v1", "v2")
	strata(t, "copy", "oci:"+src+":v2", "oci:"+l+":ghcr.io/strata/app:latest")
	r := strataFail(t, "inspect", l+":app")
	if r.Code != 1 || !strings.Contains(r.Stderr, "ambiguous") || !strings.Contains(r.Stderr, "localhost/app:latest") || !strings.Contains(r.Stderr, "ghcr.io/strata/app:latest") {
		t.Fatalf("ambiguous short name: exit %d: %s", r.Code, r.Stderr)
	}
	if _, d := inspected(t, l+":strata/app"); d != img.Desc.Digest.String() {
		t.Fatalf("strata/app is %s, want %s", d, img.Desc.Digest)
	}
	// rm finds names the same way.
	strata(t, "rm", l+":ov1")
	if got := names(t, l); !slices.Equal(got, []string{"ghcr.io/strata/app:latest", "localhost/app:latest"}) {
		t.Fatalf("after rm ov1: %v", got)
	}
}

// TestNamesBareTagsStay: a bare tag other tools wrote (skopeo's oci:DIR:v1)
// is matched first and kept as it is, beside a loaded docker name that
// reads the same.
func TestNamesBareTagsStay(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	a := makeImage(t, src, "bare-a", "linux/amd64", "", "a")
	b := makeImage(t, src, "bare-b", "linux/amd64", "", "b")
	l := filepath.Join(dir, "l")
	mustRun(t, "skopeo", "copy", "oci:"+src+":a", "oci:"+l+":v1")
	// A docker-archive named v1 (docker.io/library/v1:latest) of another
	// image, loaded beside it.
	arch := filepath.Join(dir, "b.tar")
	strata(t, "copy", "oci:"+src+":b", "docker-archive:"+arch+":v1")
	strata(t, "load", arch, l)
	if got := names(t, l); !slices.Equal(got, []string{"docker.io/library/v1:latest", "v1"}) {
		t.Fatalf("names %v", got)
	}
	if _, d := inspected(t, l+":v1"); d != a.Desc.Digest.String() {
		t.Fatalf("v1 is %s, want skopeo's %s", d, a.Desc.Digest)
	}
	if _, d := inspected(t, l+":v1:latest"); d != b.Desc.Digest.String() {
		t.Fatalf("v1:latest is %s, want the loaded %s", d, b.Desc.Digest)
	}
	// import, commit and tag keep names as typed.
	strata(t, "tag", l+":v1", "v1.1")
	if got := names(t, l); !slices.Contains(got, "v1.1") {
		t.Fatalf("tag stored %v", got)
	}
	// skopeo and umoci still read the bare tag.
	mustRun(t, "skopeo", "inspect", "oci:"+l+":v1")
}

// archiveIndex reads index.json out of an archive.
func archiveIndex(t testing.TB, file string) ocispec.Index {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no index.json", file)
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			var idx ocispec.Index
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatal(err)
			}
			return idx
		}
	}
}

// containerd is a private containerd 1.6 for one test.
type containerd struct {
	sock string
}

// startContainerd runs containerd with its own root, state and socket
// (from a config file of its own) and stops it by its pid when the test
// ends.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	needRoot(t)
	bin := needTool(t, "containerd")
	needTool(t, "ctr")
	// Socket paths are limited to 108 bytes: keep the root short.
	root, err := os.MkdirTemp("/tmp", "sc-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerd{sock: filepath.Join(root, "c.sock")}
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(root, "root"), filepath.Join(root, "state"), c.sock, c.sock+".ttrpc")
	confFile := filepath.Join(root, "config.toml")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(root, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", confFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logFile.Close()
		unmountUnder(root)
		if err := os.RemoveAll(root); err != nil {
			t.Logf("remove %s: %v", root, err)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd exited: %v\n%s", err, tail(string(log), 3000))
		default:
		}
		if r := runCmd(t, nil, "ctr", "--address", c.sock, "version"); r.Code == 0 {
			return c
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("containerd did not answer within 60s\n%s", tail(string(log), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *containerd) ctr(t testing.TB, args ...string) string {
	t.Helper()
	return mustRun(t, "ctr", append([]string{"--address", c.sock, "--namespace", "strata-test"}, args...)...)
}

// TestNamesCtrImport: containerd's ctr names the images of strata's
// oci-archives and docker-archives by their full names, which strata
// writes as Docker 25 does (io.containerd.image.name, and the tag alone
// in ref.name).
func TestNamesCtrImport(t *testing.T) {
	c := startContainerd(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeImage(t, src, "ctr-a", "linux/amd64", "", "example.com/strata/ctr:1")
	makeImage(t, src, "ctr-b", "linux/amd64", "", "v1")
	makeImage(t, src, "ctr-c", "linux/amd64", "", "busybox:1")

	oci := filepath.Join(dir, "oci.tar")
	strata(t, "save", "--format", "oci-archive", "-o", oci, src+":example.com/strata/ctr:1", src+":busybox:1")
	var got [][2]string
	for _, m := range archiveIndex(t, oci).Manifests {
		got = append(got, [2]string{m.Annotations[ocispec.AnnotationRefName], m.Annotations["io.containerd.image.name"]})
	}
	if want := [][2]string{{"1", "example.com/strata/ctr:1"}, {"1", "docker.io/library/busybox:1"}}; !slices.Equal(got, want) {
		t.Fatalf("oci-archive index.json names %v, want %v", got, want)
	}
	c.ctr(t, "images", "import", oci)
	docker := filepath.Join(dir, "docker.tar")
	strata(t, "save", "--name", "example.com/strata/renamed:2", "-o", docker, src+":v1")
	c.ctr(t, "images", "import", docker)
	// A bare tag in an oci-archive is a tag only, as skopeo writes it:
	// ctr takes --base-name for the rest.
	bare := filepath.Join(dir, "bare.tar")
	strata(t, "save", "--format", "oci-archive", "-o", bare, src+":v1")
	c.ctr(t, "images", "import", "--base-name", "example.com/strata/base", bare)

	list := strings.Fields(c.ctr(t, "images", "list", "--quiet"))
	slices.Sort(list)
	want := []string{"docker.io/library/busybox:1", "example.com/strata/base:v1", "example.com/strata/ctr:1", "example.com/strata/renamed:2"}
	if !slices.Equal(list, want) {
		t.Fatalf("ctr images: %v, want %v", list, want)
	}
	for _, n := range list {
		if strings.HasPrefix(n, "import-") {
			t.Fatalf("ctr named an image %s", n)
		}
	}
	// And back: ctr's export loads into strata under the same names.
	exported := filepath.Join(dir, "exported.tar")
	c.ctr(t, "images", "export", exported, "example.com/strata/ctr:1")
	l := filepath.Join(dir, "l")
	strata(t, "load", exported, l)
	if got := names(t, l); !slices.Equal(got, []string{"example.com/strata/ctr:1"}) {
		t.Fatalf("ctr export loaded as %v", got)
	}
}
