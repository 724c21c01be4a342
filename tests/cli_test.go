package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// cliImage builds a one-layer linux/amd64 image in the layout at dir (made
// if needed) with the layout package, as the import command would, and
// returns its manifest and layer descriptors. The image is not named.
func cliImage(t *testing.T, dir, content string) (manifest, layer ocispec.Descriptor) {
	t.Helper()
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	files := []struct{ name, body string }{{"etc/", ""}, {"etc/motd", content}, {"hello", "hello " + content}}
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(tb.Bytes())
	zw.Close()
	layer, err = l.PutBytes(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.ParsePlatform("linux/amd64")
	if err != nil {
		t.Fatal(err)
	}
	cfg := layout.NewConfig(p)
	if err := cfg.AppendLayer(digest.FromBytes(tb.Bytes())); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetRuntime("Cmd", []string{"/hello"}); err != nil {
		t.Fatal(err)
	}
	manifest, err = l.PutImage(cfg, []ocispec.Descriptor{layer}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return manifest, layer
}

// cliTag names an image with the layout package.
func cliTag(t *testing.T, dir string, d ocispec.Descriptor, names ...string) {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Tag(d, names...); err != nil {
		t.Fatal(err)
	}
}

// cliNames lists the names in the layout, per `strata ls --json`.
func cliNames(t *testing.T, dir string) map[string]digest.Digest {
	t.Helper()
	var ents []layout.Entry
	out := strata(t, "ls", "--json", dir)
	if err := json.Unmarshal([]byte(out), &ents); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	names := map[string]digest.Digest{}
	for _, e := range ents {
		if e.Err != "" {
			t.Fatalf("ls: %s: %s", e.Name, e.Err)
		}
		n := e.Name
		if n == "" {
			n = "@" + e.Descriptor.Digest.String()
		}
		names[n] = e.Descriptor.Digest
	}
	return names
}

func cliBlobExists(dir string, d digest.Digest) bool {
	_, err := os.Stat(filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded()))
	return err == nil
}

// The requirement: 16 strata tag processes started at once on one
// layout leave all 16 tags, and the layout checks clean. A gc runs among
// them and must remove nothing.
func TestCLIParallelTag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	m, _ := cliImage(t, dir, "parallel")
	cliTag(t, dir, m, "base")

	const n = 16
	cmds := make([]*exec.Cmd, 0, n+1)
	outs := make([]*bytes.Buffer, 0, n+1)
	for i := 0; i < n; i++ {
		cmds = append(cmds, exec.Command(strataBin, "--quiet", "tag", dir+":base", fmt.Sprintf("t%02d", i)))
	}
	cmds = append(cmds, exec.Command(strataBin, "--quiet", "gc", dir))
	for _, c := range cmds {
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		outs = append(outs, &b)
	}
	// Start them all before waiting for any, so they overlap.
	for i, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatalf("start %v: %v", c.Args, err)
		}
		defer func(i int) {
			if cmds[i].ProcessState == nil {
				cmds[i].Process.Kill()
				cmds[i].Wait()
			}
		}(i)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(cmds))
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Wait()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(cmds[i].Args, " "), err, outs[i])
		}
	}

	names := cliNames(t, dir)
	if len(names) != n+1 {
		t.Errorf("want %d names, got %d: %v", n+1, len(names), names)
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("t%02d", i)
		if names[name] != m.Digest {
			t.Errorf("tag %s: got %q, want %s", name, names[name], m.Digest)
		}
	}
	if out := strata(t, "fsck", dir); out != "ok\n" {
		t.Errorf("fsck after parallel tags: %q", out)
	}
	// Every tag is visible to a peer reading the layout.
	needTool(t, "skopeo")
	raw := strata(t, "inspect", "--raw", "manifest", dir+":t07")
	if got := mustRun(t, "skopeo", "inspect", "--raw", "oci:"+dir+":t07"); got != raw {
		t.Errorf("skopeo sees t07 as\n%s\nstrata as\n%s", got, raw)
	}
}

// rm removes names; gc then removes the blobs only they reached and keeps
// untagged images and blobs still named.
func TestCLIRmGC(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	a, aLayer := cliImage(t, dir, "a")
	b, bLayer := cliImage(t, dir, "b")
	u, uLayer := cliImage(t, dir, "untagged")
	cliTag(t, dir, a, "a", "docker.io/example/a:1")
	cliTag(t, dir, b, "b")
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AddUntagged(u); err != nil {
		t.Fatal(err)
	}
	l.Close()
	// A blob nothing names.
	stray := filepath.Join(dir, "blobs", "sha256")
	strayD := digest.FromString("stray")
	if err := os.WriteFile(filepath.Join(stray, strayD.Encoded()), []byte("stray"), 0o644); err != nil {
		t.Fatal(err)
	}

	if out := strata(t, "gc", dir); out != "removed 1 blob(s), 5 B; 0 staging file(s)\n" {
		t.Errorf("gc of a stray blob: %q", out)
	}
	// Removing one of a's two names keeps a.
	strata(t, "rm", dir+":a")
	strata(t, "gc", dir)
	if !cliBlobExists(dir, a.Digest) || !cliBlobExists(dir, aLayer.Digest) {
		t.Fatal("gc removed an image that still has a name")
	}
	// Removing the rest of a and b (one command, two names) orphans both.
	strata(t, "rm", dir+":docker.io/example/a:1", dir+":b")
	var res layout.GCResult
	if err := json.Unmarshal([]byte(strata(t, "gc", "--json", dir)), &res); err != nil {
		t.Fatal(err)
	}
	removed := map[digest.Digest]bool{}
	for _, d := range res.Removed {
		removed[d] = true
	}
	for _, d := range []digest.Digest{a.Digest, aLayer.Digest, b.Digest, bLayer.Digest} {
		if !removed[d] || cliBlobExists(dir, d) {
			t.Errorf("gc kept %s", d)
		}
	}
	// The two configs went too.
	if len(res.Removed) != 6 {
		t.Errorf("gc removed %d blobs, want 6: %v", len(res.Removed), res.Removed)
	}
	for _, d := range []digest.Digest{u.Digest, uLayer.Digest} {
		if removed[d] || !cliBlobExists(dir, d) {
			t.Errorf("gc removed %s of the untagged image", d)
		}
	}
	names := cliNames(t, dir)
	if len(names) != 1 || names["@"+u.Digest.String()] != u.Digest {
		t.Errorf("after rm and gc: %v", names)
	}
	strata(t, "inspect", dir+":@"+u.Digest.String())
	if out := strata(t, "fsck", dir); out != "ok\n" {
		t.Errorf("fsck: %q", out)
	}
	// The rm'd names are gone for good.
	r := strataFail(t, "inspect", dir+":b")
	if r.Code != 1 || !strings.Contains(r.Stderr, dir+":b: reference not found") {
		t.Errorf("inspect of a removed name: %+v", r)
	}
}

// The real binary's exit codes and one-line errors.
func TestCLIErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	m, _ := cliImage(t, dir, "e")
	cliTag(t, dir, m, "v1")
	notLayout := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"ls"}, 2, "strata ls takes 1 argument"},
		{[]string{"inspect", "--raw", "nope", dir + ":v1"}, 2, `--raw "nope"`},
		{[]string{"tag", dir + ":v1", "UPPER/../x"}, 2, "invalid reference"},
		{[]string{"inspect", dir + ":v2"}, 1, dir + ":v2: reference not found"},
		{[]string{"ls", notLayout}, 1, notLayout + ": not an OCI image layout"},
		{[]string{"rm", dir + ":v1", dir + ":v9"}, 1, dir + ":v9: reference not found"},
	}
	for _, tc := range tests {
		r := strataFail(t, tc.args...)
		if r.Code != tc.code || !strings.HasPrefix(r.Stderr, "strata: ") || strings.Count(r.Stderr, "\n") != 1 ||
			!strings.Contains(r.Stderr, tc.want) || r.Stdout != "" {
			t.Errorf("strata %s: exit %d, stderr %q, stdout %q; want exit %d and %q",
				strings.Join(tc.args, " "), r.Code, r.Stderr, r.Stdout, tc.code, tc.want)
		}
	}
	// The failed rm removed nothing.
	strata(t, "inspect", dir+":v1")
}

// Layouts strata tags are read by umoci, skopeo and oci-image-tool, and
// names skopeo writes are read by strata.
func TestCLIPeersReadTags(t *testing.T) {
	for _, tool := range []string{"skopeo", "umoci", "oci-image-tool"} {
		needTool(t, tool)
	}
	dir := filepath.Join(t.TempDir(), "img")
	m, _ := cliImage(t, dir, "peers")
	cliTag(t, dir, m, "v1")
	strata(t, "tag", dir+":v1", "v2", "latest")

	out := mustRun(t, "umoci", "ls", "--layout", dir)
	got := strings.Fields(out)
	sort.Strings(got)
	if strings.Join(got, " ") != "latest v1 v2" {
		t.Errorf("umoci ls: %q", out)
	}
	mustRun(t, "oci-image-tool", "validate", "--type", "image", "--ref", "name=v2", dir)

	// skopeo copies v2 into a fresh layout under a full name.
	dst := filepath.Join(t.TempDir(), "copy")
	mustRun(t, "skopeo", "copy", "--quiet", "oci:"+dir+":v2", "oci:"+dst+":docker.io/example/peers:1")
	names := cliNames(t, dst)
	if names["docker.io/example/peers:1"] != m.Digest {
		t.Errorf("strata ls of skopeo's layout: %v", names)
	}
	if out := strata(t, "inspect", "--raw", "manifest", dst+":docker.io/example/peers:1"); digest.FromString(out) != m.Digest {
		t.Errorf("manifest of skopeo's copy hashes to %s, want %s", digest.FromString(out), m.Digest)
	}
	if out := strata(t, "fsck", dst); out != "ok\n" {
		t.Errorf("fsck of skopeo's layout: %q", out)
	}
	// rm then gc leaves a layout umoci still reads.
	strata(t, "rm", dir+":v1", dir+":latest")
	strata(t, "gc", dir)
	if out := strings.TrimSpace(mustRun(t, "umoci", "ls", "--layout", dir)); out != "v2" {
		t.Errorf("umoci ls after rm: %q", out)
	}
	mustRun(t, "umoci", "stat", "--image", dir+":v2")
}

// Progress bars are drawn on a terminal, and not with --quiet or when
// stderr is not a terminal. script(1) gives the command a terminal.
func TestCLIProgress(t *testing.T) {
	needTool(t, "script")
	dir := filepath.Join(t.TempDir(), "img")
	m, _ := cliImage(t, dir, "progress")
	cliTag(t, dir, m, "v1")
	onTerminal := func(args string) string {
		t.Helper()
		// A fresh pty is 0x0; bars need a width.
		cmd := fmt.Sprintf("stty cols 120 rows 40; %s %s", strataBin, args)
		return mustRun(t, "script", "-qec", cmd, "/dev/null")
	}
	if out := onTerminal("fsck " + dir); !strings.Contains(out, "verify blobs") || !strings.Contains(out, "100 %") {
		t.Errorf("no progress bar on a terminal:\n%q", out)
	}
	if out := onTerminal("--quiet fsck " + dir); strings.Contains(out, "verify blobs") {
		t.Errorf("progress bar with --quiet:\n%q", out)
	}
	r := runCmd(t, nil, strataBin, "fsck", dir)
	if r.Code != 0 || r.Stderr != "" || r.Stdout != "ok\n" {
		t.Errorf("fsck off a terminal: %+v", r)
	}
}
