package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// rootfsTar builds a small root filesystem tarball.
func rootfsTar(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []tar.Header{
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/hello", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "bin/hi", Typeflag: tar.TypeSymlink, Linkname: "hello"},
		{Name: "srv/", Typeflag: tar.TypeDir, Mode: 0o700, Uid: 33, Gid: 33},
		{Name: "srv/data.txt", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 33, Gid: 33},
	}
	bodies := map[string]string{
		"etc/os-release": "NAME=imported\nID=imported\n",
		"bin/hello":      "#!/bin/sh\necho hello from an imported image\n",
		"srv/data.txt":   strings.Repeat("some data\n", 5000),
	}
	for _, h := range entries {
		body := bodies[h.Name]
		h.Size = int64(len(body))
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compressFile writes in compressed by a command-line tool (so the test
// does not check strata against its own compressor) and returns the path.
func compressFile(t testing.TB, dir, tool string, in []byte) string {
	t.Helper()
	name := filepath.Join(dir, "rootfs.tar")
	if tool != "" {
		name += "." + tool
	}
	var out []byte
	if tool == "" {
		out = in
	} else {
		needTool(t, tool)
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(in)
		var b, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &b, &e
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v: %s", tool, err, e.String())
		}
		out = b.Bytes()
	}
	if err := os.WriteFile(name, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// imageConfig is the part of an image config these tests read; raw
// Healthcheck and OnBuild are checked as JSON.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant"`
	Created      string `json:"created"`
	Author       string `json:"author"`
	Config       struct {
		Cmd          []string
		Entrypoint   []string
		Env          []string
		ExposedPorts map[string]struct{}
		Labels       map[string]string
		User         string
		Volumes      map[string]struct{}
		WorkingDir   string
		StopSignal   string
		Healthcheck  json.RawMessage
		OnBuild      []string
	} `json:"config"`
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Comment   string `json:"comment"`
		CreatedBy string `json:"created_by"`
	} `json:"history"`
}

// skopeoConfig reads an image's config with skopeo, independently of
// strata's reader.
func skopeoConfig(t testing.TB, ref string) imageConfig {
	t.Helper()
	out := mustRun(t, "skopeo", "inspect", "--raw", "--config", "oci:"+ref)
	var c imageConfig
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("skopeo config of %s: %v\n%s", ref, err, out)
	}
	return c
}

type skopeoManifest struct {
	Layers []struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	} `json:"layers"`
}

func skopeoRawManifest(t testing.TB, ref string) skopeoManifest {
	t.Helper()
	out := mustRun(t, "skopeo", "inspect", "--raw", "oci:"+ref)
	var m skopeoManifest
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("skopeo manifest of %s: %v\n%s", ref, err, out)
	}
	return m
}

// layoutState is index.json and the list of blobs: what a failed command
// must leave as it was.
func layoutState(t testing.TB, dir string) string {
	t.Helper()
	idx, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var blobs []string
	err = filepath.WalkDir(filepath.Join(dir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			blobs = append(blobs, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(blobs)
	return string(idx) + "\n" + strings.Join(blobs, "\n")
}

func TestImportCompressionFormsGiveOneDiffID(t *testing.T) {
	work := t.TempDir()
	tarball := rootfsTar(t)
	dir := filepath.Join(work, "oci")
	want := sha256Hex(tarball)
	tests := []struct {
		tool   string
		mt     string
		stored bool // the blob is the input file byte for byte
	}{
		{"", "application/vnd.oci.image.layer.v1.tar+gzip", false},
		{"gzip", "application/vnd.oci.image.layer.v1.tar+gzip", true},
		{"zstd", "application/vnd.oci.image.layer.v1.tar+zstd", true},
		{"xz", "application/vnd.oci.image.layer.v1.tar+gzip", false},
		{"bzip2", "application/vnd.oci.image.layer.v1.tar+gzip", false},
	}
	for _, tc := range tests {
		name := tc.tool
		if name == "" {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) {
			file := compressFile(t, work, tc.tool, tarball)
			out := strata(t, "import", file, dir+":"+name)
			digest := strings.TrimSpace(out)
			if !strings.HasPrefix(digest, "sha256:") || len(digest) != 71 {
				t.Fatalf("import printed %q, want a manifest digest", out)
			}
			c := skopeoConfig(t, dir+":"+name)
			if len(c.RootFS.DiffIDs) != 1 || c.RootFS.DiffIDs[0] != want {
				t.Fatalf("diff_ids %v, want [%s]", c.RootFS.DiffIDs, want)
			}
			m := skopeoRawManifest(t, dir+":"+name)
			if len(m.Layers) != 1 || m.Layers[0].MediaType != tc.mt {
				t.Fatalf("layers %+v, want one %s", m.Layers, tc.mt)
			}
			if tc.stored {
				in, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				if m.Layers[0].Digest != sha256Hex(in) {
					t.Fatalf("%s input was not stored as is", name)
				}
			}
			if got := sha256Hex([]byte(mustRun(t, "skopeo", "inspect", "--raw", "oci:"+dir+":"+name))); got != digest {
				t.Fatalf("printed digest %s is not the manifest's %s", digest, got)
			}
		})
	}
}

func TestImportZstdOutputAndStdin(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	tarball := rootfsTar(t)
	r := runCmd(t, tarball, strataBin, "--quiet", "import", "--compression", "zstd", "-", dir+":z")
	if r.Code != 0 {
		t.Fatalf("import from stdin: exit %d: %s", r.Code, r.Stderr)
	}
	m := skopeoRawManifest(t, dir+":z")
	if len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Fatalf("layers %+v", m.Layers)
	}
	if c := skopeoConfig(t, dir+":z"); c.RootFS.DiffIDs[0] != sha256Hex(tarball) {
		t.Fatalf("diff_ids %v", c.RootFS.DiffIDs)
	}
}

func TestImportForceCompression(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	tarball := rootfsTar(t)
	file := compressFile(t, work, "gzip", tarball)
	strata(t, "import", "--force-compression", "--compression", "zstd", "--compression-level", "3", file, dir+":z")
	m := skopeoRawManifest(t, dir+":z")
	if len(m.Layers) != 1 || m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Fatalf("layers %+v", m.Layers)
	}
	if c := skopeoConfig(t, dir+":z"); c.RootFS.DiffIDs[0] != sha256Hex(tarball) {
		t.Fatalf("diff_ids %v", c.RootFS.DiffIDs)
	}
	// Without --force-compression the gzip input is kept.
	strata(t, "import", "--compression", "zstd", file, dir+":g")
	if m := skopeoRawManifest(t, dir+":g"); m.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("layers %+v", m.Layers)
	}
}

func TestImportUntagged(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	file := compressFile(t, work, "gzip", rootfsTar(t))
	digest := strings.TrimSpace(strata(t, "import", file, dir))
	var idx struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Digest != digest || len(idx.Manifests[0].Annotations) != 0 {
		t.Fatalf("index.json %s, want one untagged %s", b, digest)
	}
	// skopeo reads a layout's only image without a name.
	c := skopeoConfig(t, dir)
	if len(c.RootFS.DiffIDs) != 1 {
		t.Fatalf("config %+v", c)
	}
}

func TestImportChanges(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	file := compressFile(t, work, "xz", rootfsTar(t))
	strata(t, "import",
		"-c", `ENV PATH=/usr/bin:/bin LANG=C.UTF-8`,
		"-c", `ENTRYPOINT ["/bin/hello"]`,
		"-c", `CMD hello --verbose`,
		"--change", `EXPOSE 80 53/udp`,
		"-c", `LABEL org.example.team=core "with space"=yes`,
		"-c", `USER 33:33`,
		"-c", `VOLUME ["/srv"]`,
		"-c", `WORKDIR /srv`,
		"-c", `WORKDIR data`,
		"-c", `STOPSIGNAL SIGINT`,
		"-c", `HEALTHCHECK --interval=30s --retries=3 CMD /bin/hello || exit 1`,
		"-c", `ONBUILD RUN echo child`,
		"-m", "imported for the test", "--author", "Strata Test <t@example.com>",
		"--platform", "linux/arm/v7",
		file, dir+":changed")
	c := skopeoConfig(t, dir+":changed")
	cc := c.Config
	var health map[string]any
	if err := json.Unmarshal(cc.Healthcheck, &health); err != nil {
		t.Fatalf("Healthcheck %s: %v", cc.Healthcheck, err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"Env", cc.Env, []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8"}},
		{"Entrypoint", cc.Entrypoint, []string{"/bin/hello"}},
		{"Cmd", cc.Cmd, []string{"/bin/sh", "-c", "hello --verbose"}},
		{"ExposedPorts", cc.ExposedPorts, map[string]struct{}{"80/tcp": {}, "53/udp": {}}},
		{"Labels", cc.Labels, map[string]string{"org.example.team": "core", "with space": "yes"}},
		{"User", cc.User, "33:33"},
		{"Volumes", cc.Volumes, map[string]struct{}{"/srv": {}}},
		{"WorkingDir", cc.WorkingDir, "/srv/data"},
		{"StopSignal", cc.StopSignal, "SIGINT"},
		{"Healthcheck", health, json.RawMessage(`{"Interval":30000000000,"Retries":3,"Test":["CMD-SHELL","/bin/hello || exit 1"]}`)},
		{"OnBuild", cc.OnBuild, []string{"RUN echo child"}},
		{"architecture", c.Architecture + "/" + c.Variant, "arm/v7"},
		{"author", c.Author, "Strata Test <t@example.com>"},
		{"history comment", c.History[0].Comment, "imported for the test"},
	}
	for _, ch := range checks {
		if g, w := jsonOf(t, ch.got), jsonOf(t, ch.want); g != w {
			t.Errorf("%s = %s, want %s", ch.what, g, w)
		}
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestImportRefusesNonTar(t *testing.T) {
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	tarball := rootfsTar(t)
	strata(t, "import", compressFile(t, work, "", tarball), dir+":good")
	before := layoutState(t, dir)
	text := []byte(strings.Repeat("this is a text file, not a tarball\n", 2000))
	for _, tool := range []string{"", "gzip", "zstd", "xz", "bzip2"} {
		file := compressFile(t, t.TempDir(), tool, text)
		r := strataFail(t, "import", file, dir+":bad")
		if r.Code != 1 || !strings.Contains(r.Stderr, "not a tar archive") {
			t.Fatalf("%s text: exit %d, stderr %q", tool, r.Code, r.Stderr)
		}
		if after := layoutState(t, dir); after != before {
			t.Fatalf("%s text changed the layout:\n%s\n---\n%s", tool, before, after)
		}
	}
	// A refused import into a new layout leaves no layout behind.
	fresh := filepath.Join(work, "fresh")
	strataFail(t, "import", compressFile(t, t.TempDir(), "", text), fresh+":x")
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("failed import left %s: %v", fresh, err)
	}
}

func TestImportUsageErrors(t *testing.T) {
	work := t.TempDir()
	file := compressFile(t, work, "", rootfsTar(t))
	dir := filepath.Join(work, "oci")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-c", "RUN make", file, dir}, "RUN is not a valid change command"},
		{[]string{"-c", "COPY . /", file, dir}, "COPY is not a valid change command"},
		{[]string{"-c", "EXPOSE x", file, dir}, "port"},
		{[]string{"--compression", "bzip2", file, dir}, "bzip2"},
		{[]string{"--created", "yesterday", file, dir}, "invalid time"},
		{[]string{"--platform", "linux/!!", file, dir}, "platform"},
		{[]string{file}, "takes 2 argument"},
		{[]string{file, dir + ":@sha256:" + strings.Repeat("a", 64)}, "digest"},
	}
	for _, tc := range tests {
		r := strataFail(t, append([]string{"import"}, tc.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("import %v: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, r.Code, r.Stderr, tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Fatalf("import %v created %s", tc.args, dir)
		}
	}
}

// importWithEnv runs strata import with extra environment variables.
func importWithEnv(t testing.TB, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--quiet", "import"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("strata import %v: %v: %s", args, err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func TestImportReproducible(t *testing.T) {
	work := t.TempDir()
	tarball := rootfsTar(t)
	plain := compressFile(t, work, "", tarball)
	changes := []string{"-c", "CMD [\"/bin/hello\"]", "-c", "ENV A=1", "-m", "same"}
	var digests []string
	for i := 0; i < 2; i++ {
		dir := filepath.Join(work, "oci"+string(rune('a'+i)))
		digests = append(digests, importWithEnv(t, []string{"SOURCE_DATE_EPOCH=1700000000"}, append(changes, plain, dir+":v1")...))
	}
	if digests[0] != digests[1] {
		t.Fatalf("SOURCE_DATE_EPOCH imports differ: %s %s", digests[0], digests[1])
	}
	if c := skopeoConfig(t, filepath.Join(work, "ocia")+":v1"); c.Created != "2023-11-14T22:13:20Z" {
		t.Fatalf("created %q", c.Created)
	}
	// --created wins over SOURCE_DATE_EPOCH, and the same instant in RFC
	// 3339 gives the same image.
	dir := filepath.Join(work, "ocic")
	got := importWithEnv(t, []string{"SOURCE_DATE_EPOCH=5"}, append(changes, "--created", "2023-11-14T22:13:20Z", plain, dir+":v1")...)
	if got != digests[0] {
		t.Fatalf("--created import %s, want %s", got, digests[0])
	}
	// Another time gives another image.
	other := importWithEnv(t, []string{"SOURCE_DATE_EPOCH=1700000001"}, append(changes, plain, filepath.Join(work, "ocid")+":v1")...)
	if other == digests[0] {
		t.Fatal("a different SOURCE_DATE_EPOCH gave the same digest")
	}
	// A malformed SOURCE_DATE_EPOCH is an error, not silently "now".
	cmd := exec.Command(strataBin, "--quiet", "import", plain, filepath.Join(work, "ocie")+":v1")
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=last tuesday")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "SOURCE_DATE_EPOCH") {
		t.Fatalf("bad SOURCE_DATE_EPOCH: %v, %s", err, out)
	}
}

func TestImportUmociUnpack(t *testing.T) {
	needRoot(t)
	work := t.TempDir()
	dir := filepath.Join(work, "oci")
	file := compressFile(t, work, "bzip2", rootfsTar(t))
	strata(t, "import", "-c", `CMD ["/bin/hello"]`, file, dir+":v1")
	bundle := filepath.Join(work, "bundle")
	mustRun(t, "umoci", "unpack", "--image", dir+":v1", bundle)
	rootfs := filepath.Join(bundle, "rootfs")
	got, err := os.ReadFile(filepath.Join(rootfs, "etc/os-release"))
	if err != nil || string(got) != "NAME=imported\nID=imported\n" {
		t.Fatalf("etc/os-release: %q, %v", got, err)
	}
	if l, err := os.Readlink(filepath.Join(rootfs, "bin/hi")); err != nil || l != "hello" {
		t.Fatalf("bin/hi: %q, %v", l, err)
	}
	st, err := os.Stat(filepath.Join(rootfs, "bin/hello"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("bin/hello: %v, %v", st, err)
	}
	data, err := os.ReadFile(filepath.Join(rootfs, "srv/data.txt"))
	if err != nil || len(data) != 50000 {
		t.Fatalf("srv/data.txt: %d bytes, %v", len(data), err)
	}
	var spec struct {
		Process struct {
			Args []string `json:"args"`
		} `json:"process"`
	}
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	if strings.Join(spec.Process.Args, " ") != "/bin/hello" {
		t.Fatalf("runtime args %v", spec.Process.Args)
	}
	// oci-image-tool agrees the layout is valid.
	mustRun(t, "oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", dir)
}

// runtimeFields reads the runtime config fields --change sets, with
// null, missing and empty treated alike, for comparing with Docker.
func runtimeFields(t testing.TB, configJSON []byte) map[string]string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(configJSON, &m); err != nil {
		t.Fatalf("config %s: %v", configJSON, err)
	}
	out := map[string]string{}
	for _, k := range []string{"Cmd", "Entrypoint", "Env", "ExposedPorts", "Labels", "User", "Volumes",
		"WorkingDir", "StopSignal", "Healthcheck", "OnBuild"} {
		raw := m[k]
		var v any
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatalf("%s: %v", k, err)
			}
		}
		b, _ := json.Marshal(v) // maps marshal with sorted keys
		switch s := string(b); s {
		case "null", `""`, "[]", "{}":
			out[k] = ""
		default:
			out[k] = s
		}
	}
	return out
}

// TestImportChangesMatchDocker imports one tarball with the same --change
// lists into strata and into a real Docker engine and compares the
// resulting configs field by field. Docker 20.10 refuses STOPSIGNAL as a
// change (strata accepts it), so it is checked in TestImportChanges only.
func TestImportChangesMatchDocker(t *testing.T) {
	e := startDockerd(t)
	work := t.TempDir()
	file := compressFile(t, work, "", rootfsTar(t))
	dir := filepath.Join(work, "oci")
	sets := [][]string{
		{`ENV PATH=/usr/bin:/bin LANG=C.UTF-8`, `ENTRYPOINT ["/bin/hello"]`, `CMD hello --verbose`,
			`EXPOSE 80 53/udp`, `LABEL org.example.team=core "with space"=yes`, `USER 33:33`,
			`VOLUME ["/srv"]`, `WORKDIR /srv`, `WORKDIR data`,
			`HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD /bin/hello || exit 1`,
			`ONBUILD RUN echo child`},
		{`CMD ["a"]`, `ENTRYPOINT ["/init"]`},
		{`ENTRYPOINT /init --flag`},
		{`ENTRYPOINT ["/init"]`, `CMD ["b"]`},
		{`ENV A=1`, `ENV B=${A}2 C="$A and $B"`, `WORKDIR /x/$A`, `USER $A`, `LABEL l=$B`, `VOLUME /v/$A /w`},
		{`ENV PORTS="80 81"`, `EXPOSE $PORTS 9000-9002/udp 22/TCP`},
		{`ENV A one two`, `ENV A=replaced B=b`},
		{`HEALTHCHECK NONE`, `ONBUILD RUN a`, `ONBUILD COPY . /src`},
		{`HEALTHCHECK CMD ["/bin/check", "-q"]`, `CMD echo "quoted \"word\""`},
		{`LABEL a=b`, `LABEL a=c "x y"="z w"`, `VOLUME ["/a", "/b"]`, `VOLUME /c`},
	}
	for i, changes := range sets {
		var args []string
		for _, c := range changes {
			args = append(args, "-c", c)
		}
		tag := "set" + string(rune('a'+i))
		strata(t, append(append([]string{"import"}, args...), file, dir+":"+tag)...)
		ours := runtimeFields(t, mustConfigObject(t, mustRun(t, "skopeo", "inspect", "--raw", "--config", "oci:"+dir+":"+tag)))
		e.must(t, append(append([]string{"import"}, args...), file, "strata-test/"+tag+":1")...)
		theirs := runtimeFields(t, []byte(e.must(t, "image", "inspect", "--format", "{{json .Config}}", "strata-test/"+tag+":1")))
		set := 0
		for _, v := range theirs {
			if v != "" {
				set++
			}
		}
		if set == 0 {
			t.Fatalf("changes %q: docker's config shows none of them", changes)
		}
		for k, want := range theirs {
			if ours[k] != want {
				t.Errorf("changes %q: %s = %s, docker has %s", changes, k, ours[k], want)
			}
		}
	}
}

// mustConfigObject returns the "config" object of an image config.
func mustConfigObject(t testing.TB, configJSON string) []byte {
	t.Helper()
	var top struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal([]byte(configJSON), &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Config) == 0 {
		return []byte("{}")
	}
	return top.Config
}
