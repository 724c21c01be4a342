package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// strataRun runs the command line in-process and returns what it printed.
func strataRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"--quiet"}, args...), &out, &errb)
	return out.String(), errb.String(), code
}

// mustStrata runs the command line and fails the test unless it exits 0.
func mustStrata(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := strataRun(t, args...)
	if code != 0 {
		t.Fatalf("strata %s: exit %d: %s", strings.Join(args, " "), code, errs)
	}
	return out
}

// testImage is an image written by makeImage.
type testImage struct {
	desc  ocispec.Descriptor
	layer ocispec.Descriptor
}

// makeLayer stores a gzipped tar holding one file and returns its
// descriptor and diffID.
func makeLayer(t *testing.T, l *layout.Layout, name, content string) (ocispec.Descriptor, digest.Digest) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	tw.Close()
	diffID := digest.FromBytes(tb.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	d, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return d, diffID
}

// makeImage stores a one-layer image for platform plat with a full run
// configuration and returns its manifest descriptor, not yet named.
func makeImage(t *testing.T, l *layout.Layout, plat, content string) testImage {
	t.Helper()
	p, err := layout.ParsePlatform(plat)
	if err != nil {
		t.Fatal(err)
	}
	ly, diffID := makeLayer(t, l, "hello.txt", content)
	cfg := layout.NewConfig(p)
	created := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for k, v := range map[string]any{"created": created, "author": "Test Author <t@example.com>"} {
		if err := cfg.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range map[string]any{
		"Entrypoint": []string{"/bin/sh", "-c"},
		"Cmd":        []string{"echo hi"},
		"Env":        []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"},
		"WorkingDir": "/srv",
		"User":       "1000:1000",
		"Labels":     map[string]string{"org.example.team": "strata", "version": "1"},
	} {
		if err := cfg.SetRuntime(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := cfg.AppendLayer(diffID); err != nil {
		t.Fatal(err)
	}
	if err := cfg.AppendHistory(ocispec.History{Created: &created, CreatedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ly}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return testImage{desc: md, layer: ly}
}

// fixture is a layout holding:
//
//	v1, docker.io/example/app:1  one linux/amd64 image
//	multi                        an index of linux/amd64 and linux/arm64/v8
//	(untagged)                   a linux/386 image
type fixture struct {
	dir      string
	v1       testImage
	amd, arm testImage
	untagged testImage
	index    ocispec.Descriptor
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: filepath.Join(t.TempDir(), "img")}
	mustStrata(t, "init", f.dir)
	l, err := layout.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f.v1 = makeImage(t, l, "linux/amd64", "v1")
	if err := l.Tag(f.v1.desc, "v1", "docker.io/example/app:1"); err != nil {
		t.Fatal(err)
	}
	f.amd = makeImage(t, l, "linux/amd64", "multi amd64")
	f.arm = makeImage(t, l, "linux/arm64/v8", "multi arm64")
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{f.amd.desc, f.arm.desc},
	}
	if f.index, err = l.PutJSON(ocispec.MediaTypeImageIndex, idx); err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(f.index, "multi"); err != nil {
		t.Fatal(err)
	}
	f.untagged = makeImage(t, l, "linux/386", "untagged")
	if err := l.AddUntagged(f.untagged.desc); err != nil {
		t.Fatal(err)
	}
	return f
}

func readBlob(t *testing.T, dir string, d ocispec.Descriptor) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestExitCodesAndErrors(t *testing.T) {
	f := newFixture(t)
	notLayout := t.TempDir()
	os.WriteFile(filepath.Join(notLayout, "file"), []byte("x"), 0o644)
	missing := filepath.Join(t.TempDir(), "missing")
	tests := []cliCase{
		{"version", []string{"version"}, 0, nil},
		{"ls no args", []string{"ls"}, 2, []string{"strata ls takes 1 argument"}},
		{"ls two args", []string{"ls", f.dir, f.dir}, 2, []string{"got 2"}},
		{"unknown flag", []string{"ls", "--bogus", f.dir}, 2, []string{"unknown flag: --bogus"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command", "frobnicate"}},
		{"missing layout", []string{"ls", missing}, 1, []string{missing, "no such file"}},
		{"not a layout", []string{"ls", notLayout}, 1, []string{notLayout, "not an OCI image layout"}},
		{"init non-empty dir", []string{"init", notLayout}, 1, []string{notLayout, "not empty"}},
		{"inspect unknown ref", []string{"inspect", f.dir + ":nope"}, 1, []string{f.dir + ":nope", "reference not found"}},
		{"inspect bad ref", []string{"inspect", f.dir + ":Bad$ref"}, 2, []string{"invalid reference", `"Bad$ref"`}},
		{"inspect empty layout path", []string{"inspect", ":v1"}, 2, []string{"empty layout path"}},
		{"inspect ambiguous", []string{"inspect", f.dir}, 1, []string{"ambiguous reference", f.dir}},
		{"inspect missing layout", []string{"inspect", missing + ":v1"}, 1, []string{missing}},
		{"inspect bad raw", []string{"inspect", "--raw", "blob", f.dir + ":v1"}, 2, []string{`--raw "blob"`}},
		{"inspect raw and json", []string{"inspect", "--raw", "config", "--json", f.dir + ":v1"}, 2, []string{"--raw and --json"}},
		{"inspect raw index of manifest", []string{"inspect", "--raw", "index", f.dir + ":v1"}, 1, []string{"not an index", f.dir + ":v1"}},
		{"inspect no such platform", []string{"inspect", "--platform", "linux/s390x", f.dir + ":multi"}, 1, []string{"no image for platform", "linux/s390x"}},
		{"inspect wrong platform", []string{"inspect", "--platform", "linux/arm64", f.dir + ":v1"}, 1, []string{"linux/arm64", "linux/amd64"}},
		{"inspect bad platform", []string{"inspect", "--platform", "linux/", f.dir + ":v1"}, 2, []string{"invalid platform"}},
		{"tag bad new ref", []string{"tag", f.dir + ":v1", "a b"}, 2, []string{"invalid reference", `"a b"`}},
		{"tag with digest", []string{"tag", f.dir + ":v1", "@" + f.v1.desc.Digest.String()}, 2, []string{"cannot be a digest"}},
		{"tag unknown source", []string{"tag", f.dir + ":nope", "v2"}, 1, []string{f.dir + ":nope", "reference not found"}},
		{"tag one arg", []string{"tag", f.dir + ":v1"}, 2, []string{"at least 2"}},
		{"rm without ref", []string{"rm", f.dir}, 2, []string{"name the image", f.dir + ":REF"}},
		{"rm unknown ref", []string{"rm", f.dir + ":nope"}, 1, []string{f.dir + ":nope", "reference not found"}},
		{"rm no args", []string{"rm"}, 2, []string{"at least 1"}},
		{"gc missing layout", []string{"gc", missing}, 1, []string{missing}},
		{"fsck not a layout", []string{"fsck", notLayout}, 1, []string{"not an OCI image layout"}},
		{"fsck ok", []string{"fsck", f.dir}, 0, nil},
	}
	runCLICases(t, tests)
}

// cliCase is a command line, the exit status it must end with and what
// its one-line error must mention.
type cliCase struct {
	name string
	args []string
	code int
	want []string // substrings of the one-line error
}

// runCLICases runs each case in-process and checks its exit status, that
// a success prints nothing on stderr and that a failure prints one line
// starting "strata: " that mentions every want.
func runCLICases(t *testing.T, tests []cliCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := strataRun(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			if tc.code == 0 {
				if stderr != "" {
					t.Fatalf("stderr on success: %q", stderr)
				}
				return
			}
			if !strings.HasPrefix(stderr, "strata: ") || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("error is not one line starting with \"strata: \": %q", stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("error %q does not mention %q", stderr, w)
				}
			}
		})
	}
}

func TestDebugShowsErrorChain(t *testing.T) {
	f := newFixture(t)
	_, stderr, code := strataRun(t, "--debug", "inspect", f.dir+":nope")
	if code != 1 || !strings.Contains(stderr, "debug: error chain") || !strings.Contains(stderr, "strata: ") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	// The flag does not stick to the next run.
	_, stderr, _ = strataRun(t, "inspect", f.dir+":nope")
	if strings.Contains(stderr, "debug:") {
		t.Fatalf("--debug leaked into the next run: %q", stderr)
	}
}

func TestLs(t *testing.T) {
	f := newFixture(t)
	out := mustStrata(t, "ls", f.dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want header and 4 rows, got:\n%s", out)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME DIGEST PLATFORMS SIZE" {
		t.Fatalf("header %q", lines[0])
	}
	rows := []struct {
		name, digest, platforms string
	}{
		{"docker.io/example/app:1", f.v1.desc.Digest.Encoded()[:12], "linux/amd64"},
		{"multi", f.index.Digest.Encoded()[:12], "linux/amd64,linux/arm64"},
		{"v1", f.v1.desc.Digest.Encoded()[:12], "linux/amd64"},
		{"<none>", f.untagged.desc.Digest.Encoded()[:12], "linux/386"},
	}
	for i, r := range rows {
		fields := strings.Fields(lines[i+1])
		if len(fields) != 5 || fields[0] != r.name || fields[1] != r.digest || fields[2] != r.platforms ||
			!strings.HasSuffix(fields[4], "B") {
			t.Errorf("row %d = %q, want %s %s %s SIZE", i, lines[i+1], r.name, r.digest, r.platforms)
		}
	}
	if out := mustStrata(t, "ls", "--no-trunc", f.dir); !strings.Contains(out, f.index.Digest.String()) {
		t.Errorf("--no-trunc does not print the full digest:\n%s", out)
	}

	var ents []layout.Entry
	if err := json.Unmarshal([]byte(mustStrata(t, "ls", "--json", f.dir)), &ents); err != nil {
		t.Fatal(err)
	}
	if len(ents) != 4 || ents[1].Name != "multi" || ents[1].Descriptor.Digest != f.index.Digest ||
		len(ents[1].Platforms) != 2 || ents[3].Name != "" || ents[3].Descriptor.Digest != f.untagged.desc.Digest {
		t.Fatalf("ls --json: %+v", ents)
	}
	want := f.v1.desc.Size + f.v1.layer.Size + int64(len(mustStrata(t, "inspect", "--raw", "config", f.dir+":v1")))
	if ents[2].Size != want {
		t.Errorf("size of v1 = %d, want %d", ents[2].Size, want)
	}

	empty := filepath.Join(t.TempDir(), "empty")
	mustStrata(t, "init", empty)
	if out := mustStrata(t, "ls", "--json", empty); strings.TrimSpace(out) != "[]" {
		t.Errorf("ls --json of an empty layout = %q", out)
	}
}

func TestLsUnreadableImage(t *testing.T) {
	f := newFixture(t)
	// Remove the index's arm64 manifest: ls still lists, but fails.
	os.Remove(filepath.Join(f.dir, "blobs", "sha256", f.arm.desc.Digest.Encoded()))
	out, stderr, code := strataRun(t, "ls", f.dir)
	if code != 1 || !strings.Contains(out, "(unreadable)") || !strings.Contains(stderr, "1 image(s) could not be read") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
}

func TestInspect(t *testing.T) {
	f := newFixture(t)
	out := mustStrata(t, "inspect", f.dir+":v1")
	for _, want := range []string{
		"Name:        v1",
		"Digest:      " + f.v1.desc.Digest.String(),
		"Media type:  " + ocispec.MediaTypeImageManifest,
		"Platform:    linux/amd64",
		"Created:     2024-05-01T12:00:00Z",
		"Author:      Test Author <t@example.com>",
		`Entrypoint:  ["/bin/sh","-c"]`,
		`Cmd:         ["echo hi"]`,
		"WorkingDir:  /srv",
		"User:        1000:1000",
		"  PATH=/usr/bin:/bin\n  LANG=C.UTF-8\n",
		"Labels:\n  org.example.team=strata\n  version=1\n",
		"History:     1 entries",
		"Layers:      1\n  " + f.v1.layer.Digest.String(),
		ocispec.MediaTypeImageLayerGzip,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	var s imageSummary
	if err := json.Unmarshal([]byte(mustStrata(t, "inspect", "--json", f.dir+":v1")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Name != "v1" || s.Manifest.Digest != f.v1.desc.Digest || s.Platform != "linux/amd64" || s.Index != nil ||
		len(s.Layers) != 1 || s.Layers[0].Digest != f.v1.layer.Digest || s.Config.WorkingDir != "/srv" ||
		len(s.Config.Env) != 2 || s.History != 1 || s.Author == "" || s.Created == nil {
		t.Fatalf("inspect --json: %+v", s)
	}

	// An index: the host's platform by default, --platform picks.
	tests := []struct {
		platform string
		want     testImage
		plat     string
	}{
		{"linux/amd64", f.amd, "linux/amd64"},
		{"linux/arm64", f.arm, "linux/arm64"},
		{"linux/arm64/v8", f.arm, "linux/arm64"},
	}
	for _, tc := range tests {
		var s imageSummary
		if err := json.Unmarshal([]byte(mustStrata(t, "inspect", "--json", "--platform", tc.platform, f.dir+":multi")), &s); err != nil {
			t.Fatal(err)
		}
		if s.Manifest.Digest != tc.want.desc.Digest || s.Platform != tc.plat || s.Index == nil ||
			s.Index.Digest != f.index.Digest || strings.Join(s.Platforms, ",") != "linux/amd64,linux/arm64" {
			t.Errorf("--platform %s: %+v", tc.platform, s)
		}
	}
	out = mustStrata(t, "inspect", "--platform", "linux/arm64", f.dir+":multi")
	if !strings.Contains(out, "Index:       "+f.index.Digest.String()) || !strings.Contains(out, "Platforms:   linux/amd64, linux/arm64") {
		t.Errorf("index summary:\n%s", out)
	}

	// By digest, and the only image of a layout with no REF.
	if out := mustStrata(t, "inspect", f.dir+":@"+f.untagged.desc.Digest.String()); !strings.Contains(out, "Name:        <none>") ||
		!strings.Contains(out, "linux/386") {
		t.Errorf("inspect by digest:\n%s", out)
	}
}

func TestInspectRaw(t *testing.T) {
	f := newFixture(t)
	l, err := layout.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.ReadImage(f.arm.desc)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []byte
	}{
		{[]string{"--raw", "manifest", f.dir + ":v1"}, readBlob(t, f.dir, f.v1.desc)},
		{[]string{"--raw", "index", f.dir + ":multi"}, readBlob(t, f.dir, f.index)},
		{[]string{"--raw", "manifest", "--platform", "linux/arm64", f.dir + ":multi"}, readBlob(t, f.dir, f.arm.desc)},
		{[]string{"--raw", "config", "--platform", "linux/arm64", f.dir + ":multi"}, readBlob(t, f.dir, img.Manifest.Config)},
	}
	for _, tc := range tests {
		out := mustStrata(t, append([]string{"inspect"}, tc.args...)...)
		if out != string(tc.want) {
			t.Errorf("inspect %v printed %q, want the stored bytes %q", tc.args, out, tc.want)
		}
	}
	// The printed bytes hash to the digest.
	if d := digest.FromString(mustStrata(t, "inspect", "--raw", "index", f.dir+":multi")); d != f.index.Digest {
		t.Errorf("--raw index hashes to %s, want %s", d, f.index.Digest)
	}
}

func TestInspectRawVerifies(t *testing.T) {
	f := newFixture(t)
	p := filepath.Join(f.dir, "blobs", "sha256", f.v1.desc.Digest.Encoded())
	b := readBlob(t, f.dir, f.v1.desc)
	b[len(b)-2] ^= 1
	os.Chmod(p, 0o644)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, code := strataRun(t, "inspect", "--raw", "manifest", f.dir+":v1")
	if code != 1 || out != "" || !strings.Contains(stderr, f.v1.desc.Digest.String()) {
		t.Fatalf("corrupt manifest: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}

func TestTagAndRm(t *testing.T) {
	f := newFixture(t)
	mustStrata(t, "tag", f.dir+":v1", "v2", f.dir+":latest", "localhost:5000/x/y:3")
	for _, ref := range []string{"v2", "latest", "localhost:5000/x/y:3"} {
		var s imageSummary
		if err := json.Unmarshal([]byte(mustStrata(t, "inspect", "--json", f.dir+":"+ref)), &s); err != nil {
			t.Fatal(err)
		}
		if s.Manifest.Digest != f.v1.desc.Digest || s.Name != ref {
			t.Errorf("%s: %+v", ref, s)
		}
	}
	// Tagging by digest names the untagged image; its <none> entry goes.
	mustStrata(t, "tag", f.dir+":@"+f.untagged.desc.Digest.String(), "i386")
	if out := mustStrata(t, "ls", f.dir); strings.Contains(out, "<none>") || !strings.Contains(out, "i386") {
		t.Errorf("after tagging the untagged image:\n%s", out)
	}
	// A name moves to the image it is given to.
	mustStrata(t, "tag", f.dir+":multi", "latest")
	var s imageSummary
	json.Unmarshal([]byte(mustStrata(t, "inspect", "--json", "--raw=", f.dir+":latest")), &s)
	if s.Index == nil || s.Index.Digest != f.index.Digest {
		t.Errorf("latest did not move to the index: %+v", s)
	}

	// rm is all or nothing within a layout.
	if _, _, code := strataRun(t, "rm", f.dir+":v2", f.dir+":nope"); code != 1 {
		t.Fatalf("rm with an unknown ref: exit %d", code)
	}
	mustStrata(t, "inspect", f.dir+":v2")
	mustStrata(t, "rm", f.dir+":v2", f.dir+":latest", f.dir+":v2")
	for _, ref := range []string{"v2", "latest"} {
		if _, _, code := strataRun(t, "inspect", f.dir+":"+ref); code != 1 {
			t.Errorf("%s still resolves after rm", ref)
		}
	}
	// By digest: every name of the image goes.
	mustStrata(t, "rm", f.dir+":@"+f.v1.desc.Digest.String())
	out := mustStrata(t, "ls", f.dir)
	for _, gone := range []string{"v1", "docker.io/example/app:1", "localhost:5000/x/y:3"} {
		if strings.Contains(out, gone+" ") {
			t.Errorf("%s listed after rm by digest:\n%s", gone, out)
		}
	}
	mustStrata(t, "fsck", f.dir)
}

func TestGC(t *testing.T) {
	f := newFixture(t)
	if out := mustStrata(t, "gc", f.dir); out != "removed 0 blob(s), 0 B; 0 staging file(s)\n" {
		t.Errorf("gc of a clean layout: %q", out)
	}
	mustStrata(t, "rm", f.dir+":v1", f.dir+":docker.io/example/app:1")
	var res layout.GCResult
	if err := json.Unmarshal([]byte(mustStrata(t, "gc", "--json", f.dir)), &res); err != nil {
		t.Fatal(err)
	}
	// v1's manifest, config and layer.
	if len(res.Removed) != 3 || res.Bytes <= f.v1.desc.Size+f.v1.layer.Size {
		t.Fatalf("gc removed %+v", res)
	}
	for _, d := range []digest.Digest{f.v1.desc.Digest, f.v1.layer.Digest} {
		if _, err := os.Stat(filepath.Join(f.dir, "blobs", "sha256", d.Encoded())); !os.IsNotExist(err) {
			t.Errorf("blob %s survived gc: %v", d, err)
		}
	}
	// The untagged image and the index stay.
	mustStrata(t, "inspect", f.dir+":@"+f.untagged.desc.Digest.String())
	mustStrata(t, "inspect", "--platform", "linux/arm64", f.dir+":multi")
	if out := mustStrata(t, "fsck", f.dir); out != "ok\n" {
		t.Errorf("fsck after gc: %q", out)
	}
}

func TestFsck(t *testing.T) {
	f := newFixture(t)
	if out := mustStrata(t, "fsck", f.dir); out != "ok\n" {
		t.Fatalf("fsck: %q", out)
	}
	// One corrupt layer, one missing manifest: two problems, two lines.
	lp := filepath.Join(f.dir, "blobs", "sha256", f.v1.layer.Digest.Encoded())
	os.Chmod(lp, 0o644)
	if err := os.WriteFile(lp, bytes.Repeat([]byte{'x'}, int(f.v1.layer.Size)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(f.dir, "blobs", "sha256", f.arm.desc.Digest.Encoded()))
	out, stderr, code := strataRun(t, "fsck", f.dir)
	if code != 1 || !strings.Contains(stderr, "2 problem(s)") {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(out, f.v1.layer.Digest.String()) || !strings.Contains(out, f.arm.desc.Digest.String()+" is missing") {
		t.Errorf("fsck output:\n%s", out)
	}
	var probs []layout.Problem
	out, _, code = strataRun(t, "fsck", "--json", f.dir)
	if err := json.Unmarshal([]byte(out), &probs); err != nil || code != 1 || len(probs) != 2 {
		t.Errorf("fsck --json: exit %d, %v, %+v", code, err, probs)
	}
}

func TestInitIdempotent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	mustStrata(t, "init", dir)
	mustStrata(t, "init", dir)
	for _, name := range []string{"oci-layout", "index.json", "blobs"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	var marker map[string]string
	b, _ := os.ReadFile(filepath.Join(dir, "oci-layout"))
	if json.Unmarshal(b, &marker) != nil || marker["imageLayoutVersion"] != "1.0.0" {
		t.Errorf("oci-layout = %s", b)
	}
}

func TestCompletion(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		args    []string
		want    []string
		notWant []string
	}{
		{[]string{"inspect", f.dir + ":"}, []string{f.dir + ":v1\t", f.dir + ":multi\t", f.dir + ":docker.io/example/app:1\t", f.dir + ":@" + f.untagged.desc.Digest.String()}, nil},
		{[]string{"rm", f.dir + ":v1", f.dir + ":m"}, []string{f.dir + ":multi\t"}, []string{":v1\t"}},
		{[]string{"tag", f.dir}, []string{f.dir + ":v1\t"}, nil},
		{[]string{"tag", f.dir + ":v1", ""}, []string{":4"}, []string{":v1"}},
		{[]string{"ls", ""}, []string{":16"}, nil}, // directories only
	}
	for _, tc := range tests {
		out := mustStrata(t, append([]string{"__complete"}, tc.args...)...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("complete %q: output lacks %q:\n%s", tc.args, w, out)
			}
		}
		for _, w := range tc.notWant {
			if strings.Contains(out, w) {
				t.Errorf("complete %q: output has %q:\n%s", tc.args, w, out)
			}
		}
	}
	for _, sh := range []string{"bash", "zsh", "fish", "powershell"} {
		if out := mustStrata(t, "completion", sh); !strings.Contains(out, "strata") {
			t.Errorf("completion %s printed no script", sh)
		}
	}
}

func TestHumanSize(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"},
	}
	for _, tc := range tests {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func FuzzParseRefArg(f *testing.F) {
	for _, s := range []string{"dir", "dir:v1", "./a/b:docker.io/x/y:1", "d:@sha256:" + strings.Repeat("a", 64), ":x", "d:", "d:Bad$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dir, ref, err := parseRefArg(s)
		if err != nil {
			var u usageError
			if !errorsAs(err, &u) {
				t.Fatalf("%q: error %v is not a usage error", s, err)
			}
			return
		}
		if dir == "" || (ref == "" && dir != s && dir+":" != s) || (ref != "" && dir+":"+ref != s) {
			t.Fatalf("%q split into %q and %q", s, dir, ref)
		}
	})
}

func FuzzShortDigest(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("")
	f.Add("x:")
	f.Fuzz(func(t *testing.T, s string) {
		if got := shortDigest(s); len(got) > 12 || len(got) > len(s) {
			t.Fatalf("shortDigest(%q) = %q", s, got)
		}
	})
}

// Sanity check that the fixture's layer digests are what the blobs hold.
func TestFixtureBlobs(t *testing.T) {
	f := newFixture(t)
	b := readBlob(t, f.dir, f.v1.layer)
	if got := digest.Digest("sha256:" + hexSum(b)); got != f.v1.layer.Digest {
		t.Fatalf("layer blob hashes to %s, want %s", got, f.v1.layer.Digest)
	}
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return digest.NewDigestFromBytes(digest.SHA256, s[:]).Encoded()
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func FuzzRefCompletions(f *testing.F) {
	dir := f.TempDir()
	l, err := layout.Init(dir)
	if err != nil {
		f.Fatal(err)
	}
	l.Close()
	for _, s := range []string{"", ":", "v", ":v1", ":@sha256:", "/nonexistent:x", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, suffix string) {
		for _, in := range []string{dir + suffix, suffix} {
			got, _ := refCompletions(in)
			d, _, _ := strings.Cut(in, ":")
			for _, c := range got {
				if !strings.HasPrefix(c, d+":") {
					t.Fatalf("completion %q of %q is not under %q", c, in, d)
				}
			}
		}
	})
}
