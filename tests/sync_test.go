package tests

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// syncSummary is the JSON strata sync --json prints.
type syncSummary struct {
	Images []struct {
		Source, Name string
		Digest       digest.Digest
		Status       string
		Blobs        int
		Bytes        int64
	}
	Copied, Unchanged, Blobs int
	Bytes                    int64
}

// syncEnv runs strata with a blob location cache of the test's own.
type syncEnv struct {
	t   *testing.T
	env []string
}

func newSyncEnv(t *testing.T) *syncEnv {
	return &syncEnv{t: t, env: []string{"XDG_CACHE_HOME=" + t.TempDir()}}
}

func (e *syncEnv) run(args ...string) result {
	e.t.Helper()
	return regStrataEnv(e.t, e.env, nil, append([]string{"--quiet"}, args...)...)
}

func (e *syncEnv) must(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.Code != 0 {
		e.t.Fatalf("strata %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

func (e *syncEnv) sync(args ...string) syncSummary {
	e.t.Helper()
	out := e.must(append([]string{"sync", "--json"}, args...)...)
	var s syncSummary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		e.t.Fatalf("sync --json printed %q: %v", out, err)
	}
	return s
}

// syncImages makes n single-platform images in dir, named img0..img(n-1),
// that share a base layer of baseSize random bytes and each have a small
// layer of their own; it returns their manifests.
func syncImages(t *testing.T, dir string, n, baseSize int) []ocispec.Descriptor {
	t.Helper()
	base := regTarLayer(t, map[string][]byte{"base/data": regRandomBytes(77, baseSize)}, nil)
	var out []ocispec.Descriptor
	for i := range n {
		own := regTarLayer(t, map[string][]byte{fmt.Sprintf("app/%d", i): regRandomBytes(uint64(1000+i), 4<<10)}, nil)
		out = append(out, regPutImage(t, dir, fmt.Sprintf("img%d", i), ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, base, own))
	}
	return out
}

// syncNames lists name -> digest of a layout.
func syncNames(t *testing.T, dir string) map[string]digest.Digest {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]digest.Digest{}
	for _, m := range idx.Manifests {
		out[m.Annotations[layout.AnnotationRefName]] = m.Digest
	}
	return out
}

// TestSyncRegistryToLayout syncs repositories of a registry into one
// layout: every tag under its full name, shared blobs stored once,
// digests kept, skopeo reading every image; then a second sync moves
// nothing, --tags and --platform select, and a dry run writes nothing.
func TestSyncRegistryToLayout(t *testing.T) {
	reg := regStart(t, regConfig{})
	host := reg.listen
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	imgs := syncImages(t, src, 3, 1<<20)
	idx, _, arm := regPutMultiImage(t, src, "multi", 5)
	e.must("push", src+":img0", host+"/team/app:v1")
	e.must("push", src+":img1", host+"/team/app:v2")
	e.must("push", src+":img2", host+"/team/tool:1")
	e.must("push", src+":multi", host+"/team/multi:1")

	dst := filepath.Join(tmp, "dst")
	s := e.sync("docker://"+host+"/team/app", "docker://"+host+"/team/tool:1", "docker://"+host+"/team/multi", dst)
	want := map[string]digest.Digest{
		host + "/team/app:v1":  imgs[0].Digest,
		host + "/team/app:v2":  imgs[1].Digest,
		host + "/team/tool:1":  imgs[2].Digest,
		host + "/team/multi:1": idx.Digest, // whole, by default
	}
	if got := syncNames(t, dst); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("synced names:\n%v\nwant\n%v", got, want)
	}
	if s.Copied != 4 || s.Unchanged != 0 {
		t.Fatalf("first sync: %+v", s)
	}
	fsckClean(t, dst)
	// The base layer is stored once: 3 images of 2 layers, a config and
	// a manifest each, sharing one layer; an index of 2 such images of 1.
	if n := blobCount(t, dst); n != 3*4-2+7 {
		t.Fatalf("the layout holds %d blobs, want %d", n, 3*4-2+7)
	}
	for name := range want {
		if d := regRawDigest(t, "oci:"+dst+":"+name); d != want[name] {
			t.Fatalf("skopeo reads %s as %s, want %s", name, d, want[name])
		}
	}

	// Again: nothing moves.
	again := e.sync("docker://"+host+"/team/app", "docker://"+host+"/team/tool:1", "docker://"+host+"/team/multi", dst)
	if again.Copied != 0 || again.Unchanged != 4 || again.Blobs != 0 {
		t.Fatalf("second sync moved something: %+v", again)
	}

	// A tag that moves is fetched again, and only it.
	e.must("push", src+":img2", host+"/team/app:v2")
	moved := e.sync("docker://"+host+"/team/app", dst)
	if moved.Copied != 1 || moved.Unchanged != 1 || syncNames(t, dst)[host+"/team/app:v2"] != imgs[2].Digest {
		t.Fatalf("sync after a tag moved: %+v", moved)
	}

	// --tags, --platform; a dry run first writes nothing.
	sel := filepath.Join(tmp, "sel")
	plan := e.sync("--dry-run", "--tags", "^v?1$", "--platform", "linux/arm64", "docker://"+host+"/team/app", "docker://"+host+"/team/multi", sel)
	if _, err := os.Stat(sel); !os.IsNotExist(err) {
		t.Fatalf("a dry run made %s: %v", sel, err)
	}
	if len(plan.Images) != 2 || plan.Bytes == 0 {
		t.Fatalf("dry run: %+v", plan)
	}
	got := e.sync("--tags", "^v?1$", "--platform", "linux/arm64", "docker://"+host+"/team/app", "docker://"+host+"/team/multi", sel)
	names := syncNames(t, sel)
	if len(names) != 2 || names[host+"/team/app:v1"] != imgs[0].Digest || names[host+"/team/multi:1"] != arm.Digest {
		t.Fatalf("--tags and --platform synced %v", names)
	}
	if got.Bytes != plan.Bytes || got.Blobs != plan.Blobs {
		t.Fatalf("the dry run said %d blobs, %d bytes; the sync moved %d, %d", plan.Blobs, plan.Bytes, got.Blobs, got.Bytes)
	}

	// A list file, as skopeo sync reads it.
	list := filepath.Join(tmp, "list.yaml")
	yaml := fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    team/tool: [\"1\"]\n  images-by-tag-regex:\n    team/app: ^v1$\n", host)
	if err := os.WriteFile(list, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	fromList := filepath.Join(tmp, "list")
	e.sync("--from-file", list, fromList)
	if names := syncNames(t, fromList); len(names) != 2 || names[host+"/team/tool:1"] != imgs[2].Digest || names[host+"/team/app:v1"] != imgs[0].Digest {
		t.Fatalf("--from-file synced %v", names)
	}
	// By digest, with the list's platforms: the index cut to them, kept
	// untagged (its registry name beside it, io.containerd.image.name).
	byDigest := filepath.Join(tmp, "bydigest")
	yaml = fmt.Sprintf("%s:\n  tls-verify: false\n  platforms: [linux/arm64]\n  images:\n    team/multi: [%q]\n", host, idx.Digest)
	if err := os.WriteFile(list, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	dig := e.sync("--from-file", list, byDigest)
	if len(dig.Images) != 1 || dig.Images[0].Digest != arm.Digest || syncNames(t, byDigest)[""] != arm.Digest {
		t.Fatalf("--from-file by digest with platforms: %+v (names %v)", dig, syncNames(t, byDigest))
	}
	fsckClean(t, byDigest)
	if err := os.WriteFile(list, []byte(fmt.Sprintf("%s:\n  tls-verify: false\n  images:\n    team/tool: [\"1\"]\n", host)), 0o644); err != nil {
		t.Fatal(err)
	}
	// A failed sync into a new directory leaves no layout behind.
	gone := filepath.Join(tmp, "gone")
	if r := e.run("sync", "docker://"+host+"/team/nothing:1", gone); r.Code != 1 {
		t.Fatalf("sync of a missing tag: exit %d: %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Fatalf("a failed sync left %s: %v", gone, err)
	}
	if r := e.run("sync", "--all-platforms", "--platform", "linux/amd64", "--from-file", list, fromList); r.Code != 2 {
		t.Fatalf("--all-platforms with --platform: exit %d: %s", r.Code, r.Stderr)
	}
	if r := e.run("sync", "--from-file", list, "--bogus", fromList); r.Code != 2 {
		t.Fatalf("unknown flag: exit %d", r.Code)
	}
	if err := os.WriteFile(list, []byte(host+":\n  imagez: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := e.run("sync", "--from-file", list, fromList); r.Code != 2 || !strings.Contains(r.Stderr, "imagez") {
		t.Fatalf("a list with an unknown key: exit %d: %s", r.Code, r.Stderr)
	}
}

func blobCount(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestSyncRoundTrip carries images from registry A to a directory, an
// oci-archive, another directory and registry B: the manifest digests are
// the same at every step, and a pull by digest from B finds each image.
func TestSyncRoundTrip(t *testing.T) {
	a := regStart(t, regConfig{})
	b := regStart(t, regConfig{})
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	imgs := syncImages(t, src, 2, 256<<10)
	idx, _, _ := regPutMultiImage(t, src, "multi", 9)
	e.must("push", src+":img0", a.listen+"/team/app:v1")
	e.must("push", src+":img1", a.listen+"/team/app:v2")
	e.must("push", src+":multi", a.listen+"/other/multi:1")

	d1, d2 := filepath.Join(tmp, "d1"), filepath.Join(tmp, "d2")
	tarball := filepath.Join(tmp, "images.tar")
	e.sync("docker://"+a.listen+"/team/app", "docker://"+a.listen+"/other/multi", d1)
	e.sync(d1, "oci-archive:"+tarball)
	e.sync("oci-archive:"+tarball, d2)
	if n1, n2 := syncNames(t, d1), syncNames(t, d2); fmt.Sprint(n1) != fmt.Sprint(n2) {
		t.Fatalf("names after the archive:\n%v\nbefore:\n%v", n2, n1)
	}
	fsckClean(t, d2)
	// A dry run pushes nothing and says how much would move.
	plan := e.sync("--dry-run", d2, "docker://"+b.listen+"/mirror")
	if len(plan.Images) != 3 || plan.Bytes < 256<<10 {
		t.Fatalf("dry run of the push to B: %+v", plan)
	}
	if r := runCmd(t, nil, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+b.listen+"/mirror/app:v1"); r.Code == 0 {
		t.Fatal("a dry run pushed to B")
	}
	s := e.sync(d2, "docker://"+b.listen+"/mirror")
	if s.Copied != 3 || s.Bytes != plan.Bytes {
		t.Fatalf("push to B: %+v", s)
	}
	want := map[string]digest.Digest{
		b.listen + "/mirror/app:v1":  imgs[0].Digest,
		b.listen + "/mirror/app:v2":  imgs[1].Digest,
		b.listen + "/mirror/multi:1": idx.Digest,
	}
	for ref, d := range want {
		if got := regRawDigest(t, "--tls-verify=false", "docker://"+ref); got != d {
			t.Fatalf("B serves %s as %s, want %s", ref, got, d)
		}
		// Pulled by digest on the far side: the same image.
		repo := ref[:strings.LastIndexByte(ref, ':')]
		pulled := filepath.Join(tmp, "pulled")
		out := e.must("pull", "--all-platforms", repo+"@"+d.String(), pulled+":x")
		if regFirstLine(out) != d.String() {
			t.Fatalf("pull %s@%s printed %s", repo, d, out)
		}
	}
	// Again: B has everything, nothing is pushed.
	if s := e.sync(d2, "docker://"+b.listen+"/mirror"); s.Unchanged != 3 || s.Copied != 0 {
		t.Fatalf("second push to B: %+v", s)
	}
	// Straight from A to B under another prefix, scoped.
	s = e.sync("--scoped", "docker://"+a.listen+"/team/app:v1", "docker://"+b.listen+"/scoped")
	scoped := b.listen + "/scoped/" + strings.ReplaceAll(a.listen, ":", "_") + "/team/app:v1"
	if s.Copied != 1 || s.Images[0].Name != scoped || regRawDigest(t, "--tls-verify=false", "docker://"+scoped) != imgs[0].Digest {
		t.Fatalf("registry to registry, scoped: %+v", s)
	}
}

// TestSyncMountCache pushes an image to one repository, then to another
// of the same registry: the second push mounts every blob, from what the
// first recorded, without --mount-from.
func TestSyncMountCache(t *testing.T) {
	reg := regStart(t, regConfig{})
	e := newSyncEnv(t)
	src := filepath.Join(t.TempDir(), "src")
	syncImages(t, src, 1, 512<<10)
	r := regStrataEnv(t, e.env, nil, "push", src+":img0", reg.listen+"/one/app:v1")
	if r.Code != 0 || !strings.Contains(r.Stderr, "pushed layer") {
		t.Fatalf("first push (exit %d):\n%s", r.Code, r.Stderr)
	}
	r = regStrataEnv(t, e.env, nil, "push", src+":img0", reg.listen+"/two/app:v1")
	if r.Code != 0 || strings.Contains(r.Stderr, "pushed layer") || strings.Count(r.Stderr, "mounted layer") != 2 {
		t.Fatalf("second push did not mount both layers (exit %d):\n%s", r.Code, r.Stderr)
	}
	// The cache names a repository that no longer holds the blobs: the
	// push still succeeds, uploading.
	cache := filepath.Join(strings.TrimPrefix(e.env[0], "XDG_CACHE_HOME="), "strata", "blob-locations")
	b, err := os.ReadFile(cache)
	if err != nil || !strings.Contains(string(b), "one/app") {
		t.Fatalf("cache file: %v\n%s", err, b)
	}
	if err := os.WriteFile(cache, []byte(strings.ReplaceAll(strings.ReplaceAll(string(b), "one/app", "gone/app"), "two/app", "gone/app")), 0o600); err != nil {
		t.Fatal(err)
	}
	r = regStrataEnv(t, e.env, nil, "push", src+":img0", reg.listen+"/three/app:v1")
	if r.Code != 0 || !strings.Contains(r.Stderr, "pushed layer") {
		t.Fatalf("push with a stale cache (exit %d):\n%s", r.Code, r.Stderr)
	}
	// A pull records where it found blobs too.
	e.must("push", src+":img0", reg.listen+"/four/app:v1")
	e2 := newSyncEnv(t)
	e2.must("pull", reg.listen+"/four/app:v1", filepath.Join(t.TempDir(), "pulled")+":local")
	cache2 := filepath.Join(strings.TrimPrefix(e2.env[0], "XDG_CACHE_HOME="), "strata", "blob-locations")
	if b, err := os.ReadFile(cache2); err != nil || strings.Count(string(b), reg.listen+" four/app ") != 3 {
		t.Fatalf("a pull recorded:\n%s (%v)", b, err)
	}
}

// TestSyncDeltaBundle makes a delta bundle against the far side's
// inventory: it carries only the new layer, merges into the far side,
// and is refused by a layout without the base, which stays as it was.
func TestSyncDeltaBundle(t *testing.T) {
	tmp := t.TempDir()
	near := filepath.Join(tmp, "near")
	base := regTarLayer(t, map[string][]byte{"base/data": regRandomBytes(1, 1<<20)}, nil)
	v1 := regPutImage(t, near, "app:v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, base)
	far := filepath.Join(tmp, "far")
	strata(t, "copy", "--all", near, far)
	inv := filepath.Join(tmp, "inv.json")
	if err := os.WriteFile(inv, []byte(strata(t, "inventory", far)), 0o644); err != nil {
		t.Fatal(err)
	}
	newLayer := regTarLayer(t, map[string][]byte{"app/new": regRandomBytes(2, 300<<10)}, nil)
	v2 := regPutImage(t, near, "app:v2", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, base, newLayer)
	l, err := layout.Open(near)
	if err != nil {
		t.Fatal(err)
	}
	img2, err := l.ReadImage(v2)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	baseBlob, newBlob := img2.Manifest.Layers[0], img2.Manifest.Layers[1]

	for _, base := range []string{inv, far, "full.tar"} {
		t.Run(filepath.Base(base), func(t *testing.T) {
			if base == "full.tar" {
				base = filepath.Join(tmp, "full.tar")
				strata(t, "save", "--format", "oci-archive", "-o", base, far+":app:v1")
			}
			delta := filepath.Join(t.TempDir(), "delta.tar")
			strata(t, "save", "--format", "oci-archive", "--since", base, near+":app:v1", near+":app:v2", "-o", delta)
			// Only the new layer, with the manifests and configs.
			sizes := tarBlobs(t, delta)
			if _, ok := sizes[baseBlob.Digest]; ok {
				t.Fatal("the delta carries the base layer")
			}
			if sizes[newBlob.Digest] != newBlob.Size || sizes[v1.Digest] != v1.Size || sizes[v2.Digest] != v2.Size {
				t.Fatalf("the delta holds %v", sizes)
			}
			var total int64
			for _, s := range sizes {
				total += s
			}
			if total > newBlob.Size+16<<10 {
				t.Fatalf("the delta's blobs are %d bytes; the new layer is %d", total, newBlob.Size)
			}

			// A layout without the base: refused, nothing changed.
			other := filepath.Join(t.TempDir(), "other")
			regPutImage(t, other, "unrelated", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
				regTarLayer(t, map[string][]byte{"x": []byte("x")}, nil))
			before := snapshotLayout(t, other)
			for _, cmd := range [][]string{{"load", delta, other}, {"sync", "oci-archive:" + delta, other}} {
				r := strataFail(t, cmd...)
				if !strings.Contains(r.Stderr, "lacks") {
					t.Fatalf("%s into a layout without the base: %s", cmd[0], r.Stderr)
				}
			}
			empty := filepath.Join(t.TempDir(), "empty")
			strata(t, "init", empty)
			r := strataFail(t, "load", delta, empty)
			if !strings.Contains(r.Stderr, baseBlob.Digest.String()) {
				t.Fatalf("refusal does not name the missing layer %s: %s", baseBlob.Digest, r.Stderr)
			}
			if after := snapshotLayout(t, other); after != before {
				t.Fatalf("a refused delta changed the layout:\n%s\n---\n%s", before, after)
			}

			// The far side: merged, whole, by sync and by load.
			for _, cmd := range [][]string{{"sync", "oci-archive:" + delta}, {"load", delta}} {
				dst := filepath.Join(t.TempDir(), "far")
				strata(t, "copy", "--all", far, dst)
				strata(t, append(cmd, dst)...)
				strata(t, "fsck", "--diffids", dst)
				// Archives name images fully, as docker load does.
				if names := syncNames(t, dst); names["docker.io/library/app:v2"] != v2.Digest || names["app:v1"] != v1.Digest {
					t.Fatalf("after %s of the delta: %v", cmd[0], names)
				}
			}
		})
	}
	// save's default format, a docker-archive, makes a delta too.
	t.Run("docker-archive", func(t *testing.T) {
		delta := filepath.Join(t.TempDir(), "delta.tar")
		strata(t, "save", "--since", inv, near+":app:v2", "-o", delta)
		sizes := tarBlobs(t, delta)
		if _, ok := sizes[baseBlob.Digest]; ok || sizes[newBlob.Digest] != newBlob.Size {
			t.Fatalf("the docker-archive delta holds %v", sizes)
		}
		dst := filepath.Join(t.TempDir(), "far")
		strata(t, "copy", "--all", far, dst)
		before := snapshotLayout(t, dst)
		// Through docker-archive: the name sync gives it.
		strata(t, "sync", "docker-archive:"+delta, dst)
		strata(t, "fsck", "--diffids", dst)
		if names := syncNames(t, dst); names["docker.io/library/app:v2"] != v2.Digest {
			t.Fatalf("after the docker-archive delta: %v", names)
		}
		if snapshotLayout(t, dst) == before {
			t.Fatal("the delta changed nothing")
		}
	})
}

// tarBlobs lists the blobs/ entries of a tar with their sizes.
func tarBlobs(t *testing.T, p string) map[digest.Digest]int64 {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[digest.Digest]int64{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if rest, ok := strings.CutPrefix(h.Name, "blobs/sha256/"); ok && rest != "" {
			out[digest.NewDigestFromEncoded(digest.SHA256, rest)] = h.Size
		}
	}
}

// TestSyncKilled kills sync at random points: the destination stays
// valid (fsck clean, every name on a whole image) and the next run
// completes it.
func TestSyncKilled(t *testing.T) {
	reg := regStart(t, regConfig{})
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	imgs := syncImages(t, src, 4, 24<<20)
	for i := range imgs {
		e.must("push", fmt.Sprintf("%s:img%d", src, i), fmt.Sprintf("%s/crash/app:t%d", reg.listen, i))
	}
	args := []string{"sync", "-j", "2", "docker://" + reg.listen + "/crash/app"}
	// How long a whole run takes.
	start := time.Now()
	e.must(append(args, filepath.Join(tmp, "measure"))...)
	took := time.Since(start)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	points := crashPoints(t)
	for p := range points {
		dst := filepath.Join(tmp, fmt.Sprintf("d%d", p))
		delay := time.Duration(rnd.Float64() * float64(took))
		runKilled(t, append(args, dst), delay)
		if _, err := os.Stat(filepath.Join(dst, "oci-layout")); err == nil {
			// fsck checks every name reaches whole images.
			fsckClean(t, dst)
		}
		s := e.sync(append(args[1:], dst)...)
		if len(s.Images) != len(imgs) {
			t.Fatalf("killed at %v, the next run: %+v", delay, s)
		}
		names := syncNames(t, dst)
		for i, img := range imgs {
			if names[fmt.Sprintf("%s/crash/app:t%d", reg.listen, i)] != img.Digest {
				t.Fatalf("killed at %v, then run again: %v", delay, names)
			}
		}
		fsckClean(t, dst)
		t.Logf("killed at %v of %v: next run copied %d, found %d", delay.Round(time.Millisecond), took.Round(time.Millisecond), s.Copied, s.Unchanged)
	}
}

// TestSyncSignedRoundTrip: an image signed with cosign and given an SBOM
// with oras in registry A travels by strata sync from A to a directory,
// an oci-archive, another directory and registry B: cosign verifies it in
// B, oras discover lists the SBOM there, every digest is A's, and skopeo
// reads every image of the synced layouts.
func TestSyncSignedRoundTrip(t *testing.T) {
	cosign := needTool(t, "cosign")
	oras := needTool(t, "oras")
	needTool(t, "skopeo")
	regA := regStart(t, regConfig{})
	regB := regStart(t, regConfig{})
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	img := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/bin/true"},
		regTarLayer(t, map[string][]byte{"etc/hello": []byte("hello\n"), "data": regRandomBytes(8, 64<<10)}, nil))
	refA := regA.listen + "/team/app"
	e.must("push", src+":v1", refA+":v1")
	at := refA + "@" + img.Digest.String()
	noPass := []string{"COSIGN_PASSWORD="}
	insecure := []string{"--allow-insecure-registry", "--allow-http-registry"}
	runTool(t, tmp, noPass, cosign, "generate-key-pair")
	runTool(t, tmp, noPass, cosign, append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "-y", at}, insecure...)...)
	if err := os.WriteFile(filepath.Join(tmp, "sbom.spdx.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/spdx+json", at, "sbom.spdx.json")
	sbomA := orasDiscover(t, oras, at, "--plain-http")
	sigTag := layout.CosignTag(img.Digest, ".sig")
	sigA := regRawDigest(t, "--tls-verify=false", "docker://"+refA+":"+sigTag)
	if len(sbomA) != 1 {
		t.Fatalf("oras discover in A: %v", sbomA)
	}

	d1, d2 := filepath.Join(tmp, "d1"), filepath.Join(tmp, "d2")
	tarball := filepath.Join(tmp, "all.tar")
	e.sync("docker://"+refA, d1)
	e.sync(d1, "oci-archive:"+tarball)
	e.sync("oci-archive:"+tarball, d2)
	for _, d := range []string{d1, d2} {
		fsckClean(t, d)
		for name := range syncNames(t, d) {
			if name != "" {
				mustRun(t, "skopeo", "inspect", "--raw", "oci:"+d+":"+name)
			}
		}
	}
	e.sync(d2, "docker://"+regB.listen+"/mirror")

	refB := regB.listen + "/mirror/app"
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+refB+":v1"); got != img.Digest {
		t.Fatalf("image in B is %s, want %s", got, img.Digest)
	}
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+refB+":"+sigTag); got != sigA {
		t.Fatalf("signature in B is %s, want %s", got, sigA)
	}
	verify := runTool(t, tmp, nil, cosign, append([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", refB + "@" + img.Digest.String()}, insecure...)...)
	if !strings.Contains(verify, img.Digest.String()) {
		t.Fatalf("cosign verify in B: %s", verify)
	}
	if got := orasDiscover(t, oras, refB+"@"+img.Digest.String(), "--plain-http"); fmt.Sprint(got) != fmt.Sprint(sbomA) {
		t.Fatalf("oras discover in B: %v, want %v", got, sbomA)
	}
	// Again: nothing moves, the referrers included.
	if s := e.sync(d2, "docker://"+regB.listen+"/mirror"); s.Copied != 0 {
		t.Fatalf("second sync to B: %+v", s)
	}
}

// TestSyncArchives syncs registry images into a docker-archive and an
// oci-archive and back out of each into a layout: docker load's format
// keeps single-platform images' digests and cuts an index to the host's
// platform; the oci-archive keeps the index whole. A second sync of an
// archive into the same layout moves nothing, and docker-archive input
// merges with images the layout already holds.
func TestSyncArchives(t *testing.T) {
	reg := regStart(t, regConfig{})
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	imgs := syncImages(t, src, 2, 256<<10)
	idx, amd, _ := regPutMultiImage(t, src, "multi", 11)
	e.must("push", src+":img0", reg.listen+"/team/app:v1")
	e.must("push", src+":img1", reg.listen+"/team/app:v2")
	e.must("push", src+":multi", reg.listen+"/team/multi:1")
	app, multi := "docker://"+reg.listen+"/team/app", "docker://"+reg.listen+"/team/multi"

	for _, c := range []struct {
		format string
		multi  digest.Digest
	}{{"docker-archive", amd.Digest}, {"oci-archive", idx.Digest}} {
		t.Run(c.format, func(t *testing.T) {
			tarball := filepath.Join(t.TempDir(), "images.tar")
			if s := e.sync("--platform", "linux/amd64", app, multi, c.format+":"+tarball); s.Copied != 3 && c.format == "docker-archive" {
				t.Fatalf("into the archive: %+v", s)
			}
			if c.format == "oci-archive" {
				// Whole, this time: the archive is written again.
				e.sync(app, multi, c.format+":"+tarball)
			}
			dst := filepath.Join(t.TempDir(), "dst")
			e.sync(c.format+":"+tarball, dst)
			want := map[string]digest.Digest{
				reg.listen + "/team/app:v1":  imgs[0].Digest,
				reg.listen + "/team/app:v2":  imgs[1].Digest,
				reg.listen + "/team/multi:1": c.multi,
			}
			if got := syncNames(t, dst); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("out of the %s:\n%v\nwant\n%v", c.format, got, want)
			}
			fsckClean(t, dst)
			if s := e.sync(c.format+":"+tarball, dst); s.Copied != 0 || s.Blobs != 0 {
				t.Fatalf("the same archive again: %+v", s)
			}
		})
	}
}
