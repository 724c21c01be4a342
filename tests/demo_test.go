package tests

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var manifestLine = regexp.MustCompile(`manifest (sha256:[0-9a-f]{64}) \(`)

func TestDemoRuns(t *testing.T) {
	out := strata(t, "demo")
	for _, want := range []string{
		"Create an OCI image layout",
		"diffID      sha256:",
		"application/vnd.oci.image.layer.v1.tar+gzip",
		"No problems",
		"Identical",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if m := manifestLine.FindStringSubmatch(out); m == nil {
		t.Fatalf("demo output names no manifest digest:\n%s", out)
	}
	// The temporary layout is gone.
	i := strings.LastIndex(out, "Removed ")
	if i < 0 {
		t.Fatalf("demo did not say it removed its layout:\n%s", out)
	}
	dir, _, _ := strings.Cut(out[i+len("Removed "):], " ")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("demo left %s behind: %v", dir, err)
	}
}

func TestDemoKeep(t *testing.T) {
	needRoot(t)
	work := t.TempDir()
	dir := filepath.Join(work, "demo-oci")
	out := strata(t, "demo", "--keep", dir)
	m := manifestLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("demo output names no manifest digest:\n%s", out)
	}
	// Peers read the kept layout.
	raw := mustRun(t, "skopeo", "inspect", "--raw", "oci:"+dir+":demo")
	if got := sha256Hex([]byte(raw)); got != m[1] {
		t.Fatalf("skopeo sees manifest %s, demo printed %s", got, m[1])
	}
	bundle := filepath.Join(work, "bundle")
	mustRun(t, "umoci", "unpack", "--image", dir+":demo", bundle)
	b, err := os.ReadFile(filepath.Join(bundle, "rootfs", "etc", "os-release"))
	if err != nil || !strings.Contains(string(b), "ID=strata-demo") {
		t.Fatalf("unpacked etc/os-release: %q, %v", b, err)
	}
	st, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "hello"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("unpacked bin/hello: %v, %v", st, err)
	}
	// The demo image is reproducible: a second run gives the same digest.
	again := strata(t, "demo", "--keep", filepath.Join(work, "again"))
	if m2 := manifestLine.FindStringSubmatch(again); m2 == nil || m2[1] != m[1] {
		t.Fatalf("second demo gave %v, first %s", m2, m[1])
	}
	if r := strataFail(t, "demo", "extra"); r.Code != 2 {
		t.Fatalf("demo with an argument: exit %d", r.Code)
	}
}
