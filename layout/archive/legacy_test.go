package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
)

// tarOf makes a tar of regular files (name -> body), in the given order.
func tarOf(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: files[i], Mode: 0o644, Size: int64(len(files[i+1]))}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lent is one entry of a hand-made legacy archive.
type lent struct {
	name string
	body []byte
	link string // a symlink when set
}

func archiveOf(t testing.TB, ents []lent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Mode: 0o644, Size: int64(len(e.body))}
		if e.link != "" {
			h = &tar.Header{Typeflag: tar.TypeSymlink, Name: e.name, Linkname: e.link, Mode: 0o777}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.link == "" {
			tw.Write(e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Layer IDs of the test archives.
var (
	idBase = strings.Repeat("1", 64)
	idMid  = strings.Repeat("2", 64)
	idTop  = strings.Repeat("3", 64)
	idX    = strings.Repeat("4", 64)
)

// legacyFixture is a pre-1.10 archive of one image: a base layer, an empty
// layer (no layer.tar) and a top layer that deletes a base file, named
// example.com/old:1 and old:latest.
type legacyFixture struct {
	ents       []lent
	base, top  []byte
	topJSON    map[string]any
	wantConfig map[string]any
}

func newLegacyFixture(t testing.TB) *legacyFixture {
	f := &legacyFixture{
		base: tarOf(t, "etc/a", "a\n", "etc/b", "b\n"),
		top:  tarOf(t, "etc/.wh.a", "", "etc/c", "c\n"),
	}
	f.topJSON = map[string]any{
		"id": idTop, "parent": idMid, "Size": 123, "layer_id": "sha256:x", "throwaway": false,
		"created": "2015-10-01T10:00:00.5Z", "author": "someone", "comment": "top",
		"docker_version": "1.9.1", "architecture": "amd64", "os": "linux", "container": "abc",
		"container_config": map[string]any{"Cmd": []string{"/bin/sh", "-c", "echo c > /etc/c"}},
		"config":           map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/bin", "A=1"}, "WorkingDir": "/etc"},
	}
	f.ents = []lent{
		{name: "repositories", body: mustJSON(t, map[string]map[string]string{"example.com/old": {"1": idTop}, "old": {"latest": idTop}})},
		{name: idBase + "/VERSION", body: []byte("1.0")},
		{name: idBase + "/json", body: mustJSON(t, map[string]any{"id": idBase, "created": "2015-10-01T09:00:00Z",
			"container_config": map[string]any{"Cmd": "/bin/sh -c #(nop) ADD file:abc in /"}, "docker_version": "1.9.1", "os": "linux"})},
		{name: idBase + "/layer.tar", body: f.base},
		{name: idMid + "/VERSION", body: []byte("1.0")},
		{name: idMid + "/json", body: mustJSON(t, map[string]any{"id": idMid, "parent": idBase, "created": "2015-10-01T09:30:00Z",
			"container_config": map[string]any{"Cmd": []string{"/bin/sh", "-c", "#(nop) ENV A=1"}}})},
		{name: idTop + "/VERSION", body: []byte("1.0")},
		{name: idTop + "/json", body: mustJSON(t, f.topJSON)},
		{name: idTop + "/layer.tar", body: f.top},
	}
	return f
}

// readInto reads archive b into a fresh layout.
func readInto(t testing.TB, b []byte, opts ReadOptions) (*layout.Layout, []Image, error) {
	t.Helper()
	dst, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dst.Close() })
	imgs, err := Read(context.Background(), bytes.NewReader(b), dst, opts)
	return dst, imgs, err
}

func TestReadLegacy(t *testing.T) {
	f := newLegacyFixture(t)
	dst, imgs, err := readInto(t, archiveOf(t, f.ents), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || !reflect.DeepEqual(imgs[0].Names, []string{"example.com/old:1", "docker.io/library/old:latest"}) {
		t.Fatalf("images %+v", imgs)
	}
	img, err := dst.ReadImage(imgs[0].Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.MediaType != layout.MediaTypeDockerManifest || img.Manifest.Config.MediaType != layout.MediaTypeDockerConfig {
		t.Fatalf("media types %s, %s", img.Manifest.MediaType, img.Manifest.Config.MediaType)
	}
	want := []digest.Digest{digest.FromBytes(f.base), digest.FromBytes(f.top)}
	if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, want) {
		t.Fatalf("diff_ids %v, want %v", img.Config.RootFS.DiffIDs, want)
	}
	for i, l := range img.Manifest.Layers {
		if l.Digest != want[i] || l.MediaType != layout.MediaTypeDockerLayer {
			t.Fatalf("layer %d: %+v", i, l)
		}
	}
	c := img.Config
	if !reflect.DeepEqual(c.Config.Cmd, []string{"/bin/sh"}) || !reflect.DeepEqual(c.Config.Env, []string{"PATH=/bin", "A=1"}) || c.Config.WorkingDir != "/etc" {
		t.Fatalf("runtime config %+v", c.Config)
	}
	if c.OS != "linux" || c.Architecture != "amd64" || c.Author != "someone" || c.Created == nil || c.Created.Nanosecond() != 5e8 {
		t.Fatalf("config %+v", c)
	}
	if imgs[0].Descriptor.Platform == nil || imgs[0].Descriptor.Platform.Architecture != "amd64" {
		t.Fatalf("platform %+v", imgs[0].Descriptor.Platform)
	}
	var raw map[string]json.RawMessage
	cb, _ := dst.Blobs().ReadAll(img.Manifest.Config.Digest, img.Manifest.Config.Size, 1<<20)
	json.Unmarshal(cb, &raw)
	for _, k := range v1Only {
		if _, ok := raw[k]; ok {
			t.Errorf("config keeps the v1 field %s", k)
		}
	}
	for _, k := range []string{"container_config", "docker_version", "comment", "container"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("config lost %s", k)
		}
	}
	hist := c.History
	if len(hist) != 3 {
		t.Fatalf("history %+v", hist)
	}
	wantHist := []struct {
		by    string
		empty bool
	}{
		{"/bin/sh -c #(nop) ADD file:abc in /", false},
		{"/bin/sh -c #(nop) ENV A=1", true},
		{"/bin/sh -c echo c > /etc/c", false},
	}
	for i, w := range wantHist {
		if hist[i].CreatedBy != w.by || hist[i].EmptyLayer != w.empty || hist[i].Created == nil {
			t.Errorf("history %d: %+v, want %+v", i, hist[i], w)
		}
	}
	if hist[2].Author != "someone" || hist[2].Comment != "top" {
		t.Errorf("history author/comment %+v", hist[2])
	}

	// Reading it again gives the same image: the config is deterministic.
	_, again, err := readInto(t, archiveOf(t, f.ents), ReadOptions{})
	if err != nil || again[0].Descriptor.Digest != imgs[0].Descriptor.Digest {
		t.Fatalf("second read: %+v %v", again, err)
	}
	// Names select as in the other dialects.
	for sel, want := range map[string]string{"old": "docker.io/library/old:latest", "docker.io/library/old:latest": "docker.io/library/old:latest", "example.com/old:1": "example.com/old:1", "@0": ""} {
		_, got, err := readInto(t, archiveOf(t, f.ents), ReadOptions{Name: sel})
		if err != nil || len(got) != 1 || got[0].Descriptor.Digest != imgs[0].Descriptor.Digest || (want != "" && got[0].Names[0] != want) {
			t.Errorf("select %s: %+v %v", sel, got, err)
		}
	}
	if _, _, err := readInto(t, archiveOf(t, f.ents), ReadOptions{Name: "old:2"}); !errors.Is(err, ErrNoImage) {
		t.Errorf("select old:2: %v", err)
	}
}

// TestReadLegacyVariants reads the other shapes docker and older tools
// wrote.
func TestReadLegacyVariants(t *testing.T) {
	f := newLegacyFixture(t)
	without := func(names ...string) []lent {
		var out []lent
	next:
		for _, e := range f.ents {
			for _, n := range names {
				if e.name == n {
					continue next
				}
			}
			out = append(out, e)
		}
		return out
	}
	replace := func(name string, e lent) []lent {
		out := without(name)
		return append(out, e)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(f.top)
	zw.Close()
	old := map[string]any{}
	for k, v := range f.topJSON {
		old[k] = v
	}
	old["docker_version"] = "1.6.2"
	old["checksum"] = "tarsum+sha256:x"
	parentID := map[string]any{}
	for k, v := range f.topJSON {
		parentID[k] = v
	}
	delete(parentID, "parent")
	parentID["parent_id"] = "sha256:" + idMid
	noPlatform := map[string]any{}
	for k, v := range f.topJSON {
		noPlatform[k] = v
	}
	delete(noPlatform, "os")
	delete(noPlatform, "architecture")

	cases := []struct {
		name  string
		ents  []lent
		check func(t *testing.T, dst *layout.Layout, imgs []Image)
	}{
		{"several names and images", replace("repositories", lent{name: "repositories", body: mustJSON(t, map[string]map[string]string{
			"a": {"1": idTop, "2": idTop}, "b": {"1": idBase}})}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				if len(imgs) != 2 || !reflect.DeepEqual(imgs[0].Names, []string{"docker.io/library/a:1", "docker.io/library/a:2"}) || !reflect.DeepEqual(imgs[1].Names, []string{"docker.io/library/b:1"}) {
					t.Fatalf("images %+v", imgs)
				}
				img, err := dst.ReadImage(imgs[1].Descriptor)
				if err != nil || len(img.Config.RootFS.DiffIDs) != 1 || len(img.Config.History) != 1 {
					t.Fatalf("base image %+v %v", img, err)
				}
			}},
		{"no repositories: the leaf, unnamed", without("repositories"),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				if len(imgs) != 1 || len(imgs[0].Names) != 0 {
					t.Fatalf("images %+v", imgs)
				}
			}},
		{"gzip layer.tar", replace(idTop+"/layer.tar", lent{name: idTop + "/layer.tar", body: gz.Bytes()}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				if img.Config.RootFS.DiffIDs[1] != digest.FromBytes(f.top) || img.Manifest.Layers[1].MediaType != layout.MediaTypeDockerLayerGzip {
					t.Fatalf("gzip layer %+v", img.Manifest.Layers[1])
				}
			}},
		{"symlinked duplicate layer.tar", replace(idTop+"/layer.tar", lent{name: idTop + "/layer.tar", link: "../" + idBase + "/layer.tar"}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				d := digest.FromBytes(f.base)
				if !reflect.DeepEqual(img.Config.RootFS.DiffIDs, []digest.Digest{d, d}) {
					t.Fatalf("diff_ids %v", img.Config.RootFS.DiffIDs)
				}
			}},
		{"empty layer.tar file", append(without(), lent{name: idMid + "/layer.tar"}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				if len(img.Manifest.Layers) != 2 || !img.Config.History[1].EmptyLayer {
					t.Fatalf("image %+v", img.Config.History)
				}
			}},
		{"docker before 1.8.3: stray fields dropped", replace(idTop+"/json", lent{name: idTop + "/json", body: mustJSON(t, old)}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				cb, _ := dst.Blobs().ReadAll(img.Manifest.Config.Digest, img.Manifest.Config.Size, 1<<20)
				if bytes.Contains(cb, []byte("checksum")) || !bytes.Contains(cb, []byte(`"WorkingDir":"/etc"`)) {
					t.Fatalf("config %s", cb)
				}
			}},
		{"docker 1.9 parent_id", replace(idTop+"/json", lent{name: idTop + "/json", body: mustJSON(t, parentID)}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				if len(img.Config.History) != 3 || bytes.Contains(mustJSON(t, img.Config), []byte("parent_id")) {
					t.Fatalf("history %+v", img.Config.History)
				}
			}},
		{"no platform in the json", replace(idTop+"/json", lent{name: idTop + "/json", body: mustJSON(t, noPlatform)}),
			func(t *testing.T, dst *layout.Layout, imgs []Image) {
				img, _ := dst.ReadImage(imgs[0].Descriptor)
				if img.Config.OS != "linux" || img.Config.Architecture != "amd64" {
					t.Fatalf("platform %s/%s", img.Config.OS, img.Config.Architecture)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst, imgs, err := readInto(t, archiveOf(t, c.ents), ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, img := range imgs {
				if err := complete(dst, img.Descriptor); err != nil {
					t.Fatal(err)
				}
			}
			c.check(t, dst, imgs)
		})
	}
}

// TestReadLegacyHostile refuses archives made to confuse the reader, with
// an error naming the file or layer, leaving the destination as it was.
func TestReadLegacyHostile(t *testing.T) {
	f := newLegacyFixture(t)
	with := func(repl ...lent) []lent {
		out := append([]lent{}, f.ents...)
	next:
		for _, r := range repl {
			for i := range out {
				if out[i].name == r.name {
					out[i] = r
					continue next
				}
			}
			out = append(out, r)
		}
		return out
	}
	v1 := func(id, parent string) lent {
		return lent{name: id + "/json", body: mustJSON(t, map[string]any{"id": id, "parent": parent})}
	}
	repos := func(id string) lent {
		return lent{name: "repositories", body: []byte(`{"evil":{"1":"` + id + `"}}`)}
	}
	cases := []struct {
		name string
		ents []lent
		is   error
		want string
	}{
		{"parent cycle", with(v1(idBase, idTop)), ErrInvalidArchive, "loops back to layer " + idTop},
		{"self parent", with(v1(idTop, idTop)), ErrInvalidArchive, "loops back"},
		{"parent missing", with(v1(idBase, idX)), ErrInvalidArchive, "parent " + idX + " is not in the archive"},
		{"parent climbs out", with(v1(idBase, "../../etc")), ErrInvalidArchive, `parent "../../etc"`},
		{"parent not hex", with(v1(idBase, strings.Repeat("Z", 64))), ErrInvalidArchive, "64 hex"},
		{"repositories names ../", with(repos("../../../etc/passwd")), ErrInvalidArchive, `"../../../etc/passwd"`},
		{"repositories names a missing layer", with(repos(idX)), ErrInvalidArchive, idX + ", which is not in the archive"},
		{"repositories not JSON", with(lent{name: "repositories", body: []byte("{evil")}), ErrInvalidArchive, "repositories"},
		{"repositories bad name", with(lent{name: "repositories", body: []byte(`{"Evil Name":{"1":"` + idTop + `"}}`)}), ErrInvalidArchive, "Evil Name"},
		{"json not JSON", with(lent{name: idMid + "/json", body: []byte("not json")}), ErrInvalidArchive, idMid + "/json"},
		{"json not an object", with(lent{name: idTop + "/json", body: []byte(`[1]`)}), ErrInvalidArchive, idTop + "/json"},
		{"json bad config", with(lent{name: idTop + "/json", body: []byte(`{"parent":"` + idMid + `","config":{"Cmd":7}}`)}), ErrInvalidArchive, idTop},
		{"json os not a string", with(lent{name: idTop + "/json", body: []byte(`{"parent":"` + idMid + `","os":7}`)}), ErrInvalidArchive, idTop},
		{"json says another id", with(lent{name: idMid + "/json", body: mustJSON(t, map[string]any{"id": idX, "parent": idBase})}), ErrInvalidArchive, idX},
		{"json is a link", with(lent{name: idMid + "/json", link: "../" + idBase + "/json"}), ErrUnsafeEntry, idMid + "/json is a link"},
		{"layer.tar links out of the archive", with(lent{name: idTop + "/layer.tar", link: "/etc/passwd"}), ErrUnsafeEntry, "outside"},
		{"layer.tar links up", with(lent{name: idTop + "/layer.tar", link: "../../../etc/passwd"}), ErrUnsafeEntry, "outside"},
		{"layer.tar links to a json", with(lent{name: idTop + "/layer.tar", link: "../" + idBase + "/json"}), ErrUnsafeEntry, idTop + "/layer.tar is a link"},
		{"layer.tar links to nothing", with(lent{name: idTop + "/layer.tar", link: "../" + idX + "/layer.tar"}), ErrInvalidArchive, "not in the archive"},
		{"layer.tar links in a loop", with(lent{name: idTop + "/layer.tar", link: "../" + idX + "/layer.tar"}, lent{name: idX + "/layer.tar", link: "../" + idTop + "/layer.tar"}), ErrInvalidArchive, "too many levels"},
		{"layer.tar corrupt gzip", with(lent{name: idTop + "/layer.tar", body: []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3}}), ErrInvalidArchive, idTop},
		{"an unnamed broken layer", with(v1(idX, strings.Repeat("5", 64))), ErrInvalidArchive, "not in the archive"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dst, err := layout.Init(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			before, _ := os.ReadFile(filepath.Join(dst.Dir(), "index.json"))
			_, err = Read(context.Background(), bytes.NewReader(archiveOf(t, c.ents)), dst, ReadOptions{})
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %v saying %q", err, c.is, c.want)
			}
			after, _ := os.ReadFile(filepath.Join(dst.Dir(), "index.json"))
			if !bytes.Equal(before, after) {
				t.Fatal("index.json changed")
			}
			if ents, _ := os.ReadDir(filepath.Join(dst.Dir(), "blobs", "sha256")); len(ents) != 0 {
				t.Fatalf("refused archive left %d blobs", len(ents))
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	cases := []struct {
		a, b string
		less bool
	}{
		{"1.6.2", "1.8.3", true},
		{"1.8.3", "1.8.3", false},
		{"1.9.1", "1.8.3", false},
		{"1.10", "1.8.3", false},
		{"", "1.8.3", true},
		{"1.8.3-dev", "1.8.3", true},
	}
	for _, c := range cases {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}

// FuzzLegacyArchive builds a pre-1.10 archive around fuzzed repositories,
// layer JSON and layer.tar contents: the reader must never panic, a
// refused archive leaves no blob, and an accepted one is whole, with one
// diff_id per stored layer.
func FuzzLegacyArchive(f *testing.F) {
	fx := newLegacyFixture(f)
	get := func(name string) []byte {
		for _, e := range fx.ents {
			if e.name == name {
				return e.body
			}
		}
		return nil
	}
	f.Add(get("repositories"), get(idBase+"/json"), get(idTop+"/json"), fx.top)
	f.Add([]byte(`{"x":{"y":"`+idTop+`"}}`), []byte(`{"parent":"`+idTop+`"}`), []byte(`{}`), []byte{})
	f.Add([]byte(`{}`), []byte(`{"container_config":{"Cmd":"a b"},"created":"x"}`), []byte(`{"config":null,"os":7}`), []byte{0x1f, 0x8b})
	f.Add([]byte(`null`), []byte(`{"parent_id":"sha256:`+idMid+`"}`), []byte(`{"docker_version":"0.1","rootfs":1,"history":2}`), []byte("not a tar"))
	f.Fuzz(func(t *testing.T, repos, baseJSON, topJSON, topLayer []byte) {
		ents := []lent{
			{name: "repositories", body: repos},
			{name: idBase + "/json", body: baseJSON},
			{name: idBase + "/layer.tar", body: fx.base},
			{name: idMid + "/json", body: get(idMid + "/json")},
			{name: idTop + "/json", body: topJSON},
			{name: idTop + "/layer.tar", body: topLayer},
		}
		dst, err := layout.Init(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		imgs, err := Read(context.Background(), bytes.NewReader(archiveOf(t, ents)), dst, ReadOptions{})
		if err != nil {
			if ents, _ := os.ReadDir(filepath.Join(dst.Dir(), "blobs", "sha256")); len(ents) != 0 {
				t.Fatalf("refused archive (%v) left %d blobs", err, len(ents))
			}
			return
		}
		for _, img := range imgs {
			im, err := dst.ReadImage(img.Descriptor)
			if err != nil {
				t.Fatalf("accepted an unreadable image: %v", err)
			}
			if len(im.Config.RootFS.DiffIDs) != len(im.Manifest.Layers) {
				t.Fatalf("%d diff_ids for %d layers", len(im.Config.RootFS.DiffIDs), len(im.Manifest.Layers))
			}
			empty := 0
			for _, h := range im.Config.History {
				if h.EmptyLayer {
					empty++
				}
			}
			if len(im.Config.History)-empty != len(im.Manifest.Layers) {
				t.Fatalf("history of %d (%d empty) for %d layers", len(im.Config.History), empty, len(im.Manifest.Layers))
			}
			if err := dst.VerifyImage(context.Background(), img.Descriptor, layout.VerifyOptions{DiffIDs: true}); err != nil {
				t.Fatalf("accepted an unsound image: %v", err)
			}
		}
	})
}
