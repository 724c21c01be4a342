package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// legacyTar is a layer tar of the given entries: name -> body for files,
// names ending in / for directories.
func legacyTar(t testing.TB, ents ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(ents); i += 2 {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: ents[i], Mode: 0o644, Size: int64(len(ents[i+1]))}
		if strings.HasSuffix(ents[i], "/") {
			h = &tar.Header{Typeflag: tar.TypeDir, Name: ents[i], Mode: 0o755}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(ents[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// legacyID is a v1 layer ID made from a word.
func legacyID(word string) string {
	s := sha256.Sum256([]byte(word))
	return hex.EncodeToString(s[:])
}

// bundleTree lists the files of an unpacked bundle's rootfs under dir
// (relative names, directories with a trailing /), with file contents.
func bundleTree(t testing.TB, rootfs string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(rootfs, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rootfs, p)
		switch {
		case rel == ".":
		case fi.IsDir():
			out[rel+"/"] = ""
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		default:
			out[rel] = fi.Mode().Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLegacyArchiveFromDocker loads into strata a docker-archive in the
// shape Docker wrote before 1.10 (repositories and <id>/{VERSION,json,
// layer.tar}, no manifest.json), made by cutting down what Docker 20.10
// saves of a strata image: the layers, config and name survive.
func TestLegacyArchiveFromDocker(t *testing.T) {
	e := startDockerd(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	const name = "example.com/strata/legacy:1"

	// A two-layer busybox image with a runtime config.
	l, err := layout.Init(src)
	if err != nil {
		t.Fatal(err)
	}
	var layers []ocispec.Descriptor
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	for _, tb := range [][]byte{busyboxTar(t, "legacy"), legacyTar(t, "srv/", "", "srv/app.txt", "app\n")} {
		ly, err := l.PutLayer(context.Background(), bytes.NewReader(tb))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, ly.Descriptor)
		if err := cfg.AppendLayer(ly.DiffID); err != nil {
			t.Fatal(err)
		}
		if err := cfg.AppendHistory(ocispec.History{CreatedBy: "strata legacy test"}); err != nil {
			t.Fatal(err)
		}
	}
	cmd := []string{"/bin/busybox", "cat", "app.txt"}
	env := []string{"PATH=/bin", "LEGACY=yes"}
	for k, v := range map[string]any{"Cmd": cmd, "Env": env, "WorkingDir": "/srv"} {
		if err := cfg.SetRuntime(k, v); err != nil {
			t.Fatal(err)
		}
	}
	md, err := l.PutImage(cfg, layers, nil)
	if err == nil {
		err = l.Tag(md, name)
	}
	if err != nil {
		t.Fatal(err)
	}
	orig, err := l.ReadImage(md)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}

	archive := filepath.Join(dir, "strata.tar")
	strata(t, "save", "-o", archive, src+":"+name)
	e.must(t, "load", "-i", archive)
	saved := filepath.Join(dir, "saved.tar")
	e.must(t, "save", "-o", saved, name)

	// Cut it down to the pre-1.10 shape.
	f, err := os.Open(saved)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ents []tarEntry
	layerDir := regexp.MustCompile(`^[0-9a-f]{64}/(VERSION|json|layer\.tar)?$`)
	jsons := 0
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if n != "repositories" && !layerDir.MatchString(n) {
			continue // manifest.json, <hex>.json and anything newer
		}
		if strings.HasSuffix(n, "/json") {
			jsons++
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		ents = append(ents, tarEntry{name: n, typ: h.Typeflag, link: h.Linkname, body: body})
	}
	if jsons != 2 {
		t.Fatalf("docker save wrote %d v1 layer json files, want 2", jsons)
	}
	legacy := filepath.Join(dir, "legacy.tar")
	writeTar(t, legacy, ents)

	dst := filepath.Join(dir, "dst")
	strata(t, "load", legacy, dst)
	fsckClean(t, dst)
	if got := names(t, dst); !reflect.DeepEqual(got, []string{name}) {
		t.Fatalf("names %v, want %s", got, name)
	}
	l, err = layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Image(name, nil)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, orig.Config.RootFS.DiffIDs) {
		t.Fatalf("diff_ids %v, want %v", img.Config.RootFS.DiffIDs, orig.Config.RootFS.DiffIDs)
	}
	c := img.Config.Config
	if !reflect.DeepEqual(c.Cmd, cmd) || !reflect.DeepEqual(c.Env, env) || c.WorkingDir != "/srv" {
		t.Fatalf("runtime config %+v", c)
	}
	if len(img.Config.History) != 2 {
		t.Fatalf("history %+v, want one entry per v1 layer", img.Config.History)
	}

	bundle := filepath.Join(dir, "bundle")
	strata(t, "unpack", "--root", filepath.Join(dir, "store"), dst+":"+name, bundle)
	tree := bundleTree(t, filepath.Join(bundle, "rootfs"))
	if tree["srv/app.txt"] != "app\n" || tree["etc/marker"] != "legacy\n" || tree["bin/busybox"] == "" {
		t.Fatalf("unpacked tree lacks files: %v", keys(tree))
	}

	// What strata made of it runs in Docker.
	e.must(t, "rmi", name)
	again := filepath.Join(dir, "again.tar")
	strata(t, "save", "-o", again, dst+":"+name)
	e.must(t, "load", "-i", again)
	if got := e.must(t, "run", "--rm", "--network=none", name); strings.TrimSpace(got) != "app" {
		t.Fatalf("docker run: %q", got)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// scratchLegacy is a pre-1.10 archive made from nothing: a base layer, a
// metadata-only layer without layer.tar, and a top layer with a whiteout.
func scratchLegacy(t testing.TB) (ents []tarEntry, base, top []byte) {
	base = legacyTar(t, "etc/", "", "etc/a", "a\n", "etc/b", "b\n", "var/", "", "var/old/", "", "var/old/x", "x\n")
	top = legacyTar(t, "etc/", "", "etc/.wh.a", "", "etc/c", "c\n", "var/.wh.old", "")
	idBase, idEnv, idTop := legacyID("base"), legacyID("env"), legacyID("top")
	v1 := func(id, parent, by string, extra map[string]any) []byte {
		m := map[string]any{"id": id, "created": "2015-06-01T12:00:00Z", "docker_version": "1.7.1",
			"container_config": map[string]any{"Cmd": []string{"/bin/sh", "-c", by}}, "os": "linux", "architecture": "amd64", "Size": 10}
		if parent != "" {
			m["parent"] = parent
		}
		for k, v := range extra {
			m[k] = v
		}
		return jsonBytes(t, m)
	}
	ents = []tarEntry{
		{name: "repositories", body: []byte(`{"scratch/old":{"v1":"` + idTop + `"}}`)},
		{name: idBase + "/", typ: tar.TypeDir},
		{name: idBase + "/VERSION", body: []byte("1.0")},
		{name: idBase + "/json", body: v1(idBase, "", "#(nop) ADD file:base in /", nil)},
		{name: idBase + "/layer.tar", body: base},
		{name: idEnv + "/", typ: tar.TypeDir},
		{name: idEnv + "/VERSION", body: []byte("1.0")},
		{name: idEnv + "/json", body: v1(idEnv, idBase, "#(nop) ENV OLD=1", nil)},
		{name: idTop + "/", typ: tar.TypeDir},
		{name: idTop + "/VERSION", body: []byte("1.0")},
		{name: idTop + "/json", body: v1(idTop, idEnv, "echo c > /etc/c", map[string]any{
			"config": map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"OLD=1"}, "WorkingDir": "/etc"}})},
		{name: idTop + "/layer.tar", body: top},
	}
	return ents, base, top
}

// TestLegacyArchiveFromScratch loads a pre-1.10 archive generated here:
// diffIDs are the layer.tar digests, the whiteouts apply when unpacked,
// NAME:TAG selects it in copy, and --compression recompresses it.
func TestLegacyArchiveFromScratch(t *testing.T) {
	dir := t.TempDir()
	ents, base, top := scratchLegacy(t)
	f := filepath.Join(dir, "old.tar")
	writeTar(t, f, ents)

	dst := filepath.Join(dir, "l")
	strata(t, "load", f, dst)
	fsckClean(t, dst)
	l, err := layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Image("scratch/old:v1", nil)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{digest.FromBytes(base), digest.FromBytes(top)}
	if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, want) {
		t.Fatalf("diff_ids %v, want %v", img.Config.RootFS.DiffIDs, want)
	}
	h := img.Config.History
	if len(h) != 3 || h[0].EmptyLayer || !h[1].EmptyLayer || h[2].EmptyLayer || h[1].CreatedBy != "/bin/sh -c #(nop) ENV OLD=1" {
		t.Fatalf("history %+v", h)
	}

	bundle := filepath.Join(dir, "bundle")
	strata(t, "unpack", "--root", filepath.Join(dir, "store"), dst+":scratch/old:v1", bundle)
	got := bundleTree(t, filepath.Join(bundle, "rootfs"))
	wantTree := map[string]string{"etc/": "", "etc/b": "b\n", "etc/c": "c\n", "var/": ""}
	if !reflect.DeepEqual(got, wantTree) {
		t.Fatalf("unpacked %v, want %v", got, wantTree)
	}

	// copy with a NAME:TAG selection and recompression.
	gz := filepath.Join(dir, "gz")
	strata(t, "copy", "--compression", "gzip", "docker-archive:"+f+":scratch/old:v1", "oci:"+gz+":old")
	fsckClean(t, gz)
	l, err = layout.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	gimg, err := l.Image("old", nil)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gimg.Config.RootFS.DiffIDs, want) {
		t.Fatalf("recompressed diff_ids %v, want %v", gimg.Config.RootFS.DiffIDs, want)
	}
	for _, ly := range gimg.Manifest.Layers {
		if !strings.HasSuffix(ly.MediaType, "gzip") {
			t.Fatalf("layer %s not gzip: %s", ly.Digest, ly.MediaType)
		}
	}
	if r := strataFail(t, "copy", "docker-archive:"+f+":scratch/old:v2", "oci:"+gz+":x"); r.Code != 1 || !strings.Contains(r.Stderr, "scratch/old:v2") {
		t.Fatalf("selecting a missing name: exit %d: %s", r.Code, r.Stderr)
	}
}

// TestLegacyArchiveHostile refuses damaged or hostile pre-1.10 archives
// with an error naming the layer or file, leaving the layout unchanged.
func TestLegacyArchiveHostile(t *testing.T) {
	ents, _, _ := scratchLegacy(t)
	idBase, idEnv, idTop := legacyID("base"), legacyID("env"), legacyID("top")
	with := func(repl ...tarEntry) []tarEntry {
		out := append([]tarEntry{}, ents...)
		for _, r := range repl {
			found := false
			for i := range out {
				if out[i].name == r.name {
					out[i], found = r, true
				}
			}
			if !found {
				out = append(out, r)
			}
		}
		return out
	}
	cases := []struct {
		name string
		ents []tarEntry
		want string
	}{
		{"parent cycle", with(tarEntry{name: idBase + "/json", body: []byte(`{"parent":"` + idTop + `"}`)}), "loops back to layer " + idTop},
		{"parent missing", with(tarEntry{name: idEnv + "/json", body: []byte(`{"parent":"` + legacyID("gone") + `"}`)}), legacyID("gone") + " is not in the archive"},
		{"../ layer ID", with(tarEntry{name: "repositories", body: []byte(`{"evil":{"1":"../../etc"}}`)}), `"../../etc"`},
		{"layer.tar symlinked out", with(tarEntry{name: idTop + "/layer.tar", typ: tar.TypeSymlink, link: "/etc/shadow"}), "outside the archive"},
		{"layer.tar symlinked to a json", with(tarEntry{name: idTop + "/layer.tar", typ: tar.TypeSymlink, link: "../" + idEnv + "/json"}), idTop + "/layer.tar is a link"},
		{"json not JSON", with(tarEntry{name: idEnv + "/json", body: []byte("{{{")}), idEnv + "/json"},
		{"repositories names a missing ID", with(tarEntry{name: "repositories", body: []byte(`{"evil":{"1":"` + legacyID("gone") + `"}}`)}), legacyID("gone")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "layout")
			makeImage(t, dst, "existing", "linux/amd64", "", "existing")
			before := snapshotLayout(t, dst)
			f := filepath.Join(dir, "a.tar")
			writeTar(t, f, c.ents)
			r := strataFail(t, "load", f, dst)
			if r.Code != 1 || !strings.Contains(r.Stderr, c.want) {
				t.Fatalf("exit %d, want 1 and an error saying %q:\n%s", r.Code, c.want, r.Stderr)
			}
			if after := snapshotLayout(t, dst); after != before {
				t.Fatalf("the layout changed:\nbefore %s\nafter %s", before, after)
			}
		})
	}
}
