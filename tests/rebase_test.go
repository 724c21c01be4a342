package tests

import (
	"encoding/json"
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
	"github.com/strata-oci/strata/snapshot/layertest"
)

// rbBaseLayers are the layers of base n (1: two layers, 2: three) for
// arch.
func rbBaseLayers(n int, arch string) [][]byte {
	var out [][]byte
	for i := 0; i < n+1; i++ {
		name := "base" + string(rune('0'+n)) + "-" + arch + "-" + string(rune('a'+i))
		out = append(out, layertest.Tar(layertest.Dir("etc", 0o755), layertest.File("etc/"+name, name+"\n", 0o644)))
	}
	return out
}

func rbHistory(n int, arch string) []ocispec.History {
	at := func(h int) *time.Time { v := layertest.Epoch.Add(time.Duration(h) * time.Hour).UTC(); return &v }
	var out []ocispec.History
	for i := 0; i < n+1; i++ {
		out = append(out, ocispec.History{Created: at(10*n + i), CreatedBy: "base" + string(rune('0'+n)) + " " + arch + " layer " + string(rune('1'+i))})
		if i == 0 {
			out = append(out, ocispec.History{Created: at(10*n + 5), CreatedBy: "ENV BASE=" + string(rune('0'+n)), EmptyLayer: true})
		}
	}
	return out
}

// rbBases builds base:1 and base:2, two platforms each, in a new layout.
func rbBases(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bases")
	for n := 1; n <= 2; n++ {
		var imgs []layertest.PlatformImage
		for _, p := range mutPlats {
			imgs = append(imgs, layertest.PlatformImage{Platform: p, Layers: rbBaseLayers(n, p.Architecture), History: rbHistory(n, p.Architecture),
				Env: []string{"BASE=" + string(rune('0'+n))}, Labels: map[string]string{"base": string(rune('0' + n))}})
		}
		if _, _, err := layertest.BuildIndex(dir, "base:"+string(rune('0'+n)), imgs...); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// craneImage is a config and manifest as crane shows them.
type craneImage struct {
	Config   ocispec.Image
	Manifest ocispec.Manifest
}

func (c craneImage) layers() []digest.Digest {
	var out []digest.Digest
	for _, d := range c.Manifest.Layers {
		out = append(out, d.Digest)
	}
	return out
}

// rbComparable is what crane rebase and strata rebase must agree on: the
// runtime config, the platform's os and architecture, the diff_ids, the
// history without its times, the layers and the base digest.
func rbComparable(c craneImage) string {
	var hist []ocispec.History
	for _, h := range c.Config.History {
		h.Created = nil
		hist = append(hist, h)
	}
	b, _ := json.MarshalIndent(map[string]any{
		"config": c.Config.Config, "os": c.Config.OS, "architecture": c.Config.Architecture,
		"diff_ids": c.Config.RootFS.DiffIDs, "history": hist, "layers": c.layers(),
		"base.digest": c.Manifest.Annotations[ocispec.AnnotationBaseImageDigest],
	}, "", " ")
	return string(b)
}

// TestRebaseCLI rebases a two-platform image with strata and, platform by
// platform, with crane rebase on the same images pushed to a registry,
// and compares the results; strata's unpacks (strata, umoci) to its new
// base's files and its own, and crane validates it, and strata's mutate
// and append results, from the registry.
func TestRebaseCLI(t *testing.T) {
	needRoot(t)
	crane := needTool(t, "crane")
	bases := rbBases(t)
	work := t.TempDir()
	appTar := filepath.Join(work, "app.tar")
	appLayer := layertest.Tar(layertest.Dir("app", 0o755), layertest.File("app/run", "#!/bin/sh\necho app\n", 0o755))
	if err := writeFileT(appTar, appLayer); err != nil {
		t.Fatal(err)
	}
	// The app: base:1 and a layer, its base recorded, a command of its own.
	strata(t, "append", "--timestamp", "2025-01-01T00:00:00Z", "--set-base-annotations", bases+":base:1", appTar, bases+":app")
	strata(t, "mutate", bases+":app", "--cmd", `["/app/run"]`, "--label", "app=1")
	for _, p := range mutPlats {
		if a := mutRead(t, bases, "app", p).Manifest.Annotations; a[ocispec.AnnotationBaseImageName] != "base:1" || a[ocispec.AnnotationBaseImageDigest] != regResolve(t, bases, "base:1").String() {
			t.Fatalf("%s: --set-base-annotations: %v", p.Architecture, a)
		}
	}

	reg := regStart(t, regConfig{})
	host := reg.listen
	for _, n := range []string{"base:1", "base:2", "app"} {
		strata(t, "push", bases+":"+n, host+"/rb/"+strings.ReplaceAll(n, "base:", "base:v"))
	}

	// strata, in a layout of its own with the bases in another.
	app := filepath.Join(work, "app")
	strata(t, "copy", "--all-platforms", "oci:"+bases+":app", "oci:"+app+":app")
	d := mutDigest(t, strata(t, "rebase", app+":app", "--old-base", bases+":base:1", "--new-base", bases+":base:2", app+":rebased"))
	if regResolve(t, app, "rebased") != d {
		t.Fatalf("rebased is not the printed digest")
	}
	strata(t, "fsck", "--diffids", app)
	ref := mutImage(t, func(arch string) [][]byte { return append(rbBaseLayers(2, arch), appLayer) })
	for _, p := range mutPlats {
		ps := platforms.Format(p)
		out := mustRun(t, crane, "--insecure", "--platform", ps, "rebase", host+"/rb/app",
			"--old_base", host+"/rb/base:v1", "--new_base", host+"/rb/base:v2", "-t", host+"/rb/crane-"+p.Architecture)
		var cr craneImage
		if err := json.Unmarshal([]byte(mustRun(t, crane, "--insecure", "config", strings.TrimSpace(out))), &cr.Config); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(mustRun(t, crane, "--insecure", "manifest", strings.TrimSpace(out))), &cr.Manifest); err != nil {
			t.Fatal(err)
		}
		img := mutRead(t, app, "rebased", p)
		st := craneImage{Config: img.Config, Manifest: img.Manifest}
		if got, want := rbComparable(st), rbComparable(cr); got != want {
			t.Errorf("%s: strata rebase:\n%s\ncrane rebase:\n%s", ps, got, want)
		}
		if img.Config.Variant != p.Variant || img.Manifest.Annotations[ocispec.AnnotationBaseImageName] != "base:2" {
			t.Errorf("%s: variant %q, annotations %v", ps, img.Config.Variant, img.Manifest.Annotations)
		}
		layertest.DiffTrees(t, "built by hand", mutTrees(t, ref, "v1", p), "rebased", mutTrees(t, app, "rebased", p))
		if info := skopeoInspect(t, "oci:"+app+":rebased", "--override-arch", p.Architecture, "--override-variant", p.Variant); len(info.Layers) != len(img.Manifest.Layers) {
			t.Errorf("%s: skopeo sees %d layers, the manifest has %d", ps, len(info.Layers), len(img.Manifest.Layers))
		}
	}

	// By the annotations alone, once base:1's name has moved to base:2's
	// image (an updated base): the same result.
	strata(t, "copy", "--all-platforms", "oci:"+bases+":base:1", "oci:"+app+":base:1")
	strata(t, "copy", "--all-platforms", "oci:"+bases+":base:2", "oci:"+app+":base:1")
	if r := mutDigest(t, strata(t, "rebase", app+":app", app+":again")); r == regResolve(t, app, "app") {
		t.Fatalf("rebase by annotations changed nothing")
	}
	for _, p := range mutPlats {
		a, b := mutRead(t, app, "again", p), mutRead(t, app, "rebased", p)
		if !slices.Equal(a.Config.RootFS.DiffIDs, b.Config.RootFS.DiffIDs) || !reflect.DeepEqual(a.Config.Config, b.Config.Config) {
			t.Errorf("%s: rebase by annotations differs from rebase by flags", p.Architecture)
		}
	}

	// An image not on the old base: refused, naming the layer.
	state := mutIndexState(t, app)
	r := strataFail(t, "rebase", app+":app", "--old-base", bases+":base:2", "--new-base", bases+":base:1", app+":bad")
	if !strings.Contains(r.Stderr, "layer 1 is sha256:") || !strings.Contains(r.Stderr, "not based on") {
		t.Errorf("stderr %q", r.Stderr)
	}
	if mutIndexState(t, app) != state {
		t.Errorf("a refused rebase changed the layout")
	}

	// crane reads what strata made: the rebased, mutated and appended
	// images, every platform.
	strata(t, "mutate", app+":rebased", app+":mutated", "--env", "M=1", "--annotation", "index:org.example.i=1")
	strata(t, "append", app+":mutated", appTar, app+":appended")
	for _, n := range []string{"rebased", "mutated", "appended"} {
		strata(t, "push", app+":"+n, host+"/rb/"+n)
		mustRun(t, crane, "--insecure", "validate", "--remote", host+"/rb/"+n)
		for _, p := range mutPlats {
			var c ocispec.Image
			if err := json.Unmarshal([]byte(mustRun(t, crane, "--insecure", "--platform", platforms.Format(p), "config", host+"/rb/"+n)), &c); err != nil || c.Architecture != p.Architecture {
				t.Errorf("crane config %s %s: %v %s", n, p.Architecture, err, c.Architecture)
			}
		}
	}
}

func writeFileT(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }
