package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/layout"
	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// The build corpus is tests/testdata/build/<name>: a Containerfile and
// its context. What git does not keep (modes, generated archives, a
// .deb) buildContext adds to a copy.

// buildContext copies the corpus context name into a new directory and
// completes it; it returns the copy's path.
func buildContext(t testing.TB, name string) string {
	t.Helper()
	src := filepath.Join("testdata", "build", name)
	dst := filepath.Join(t.TempDir(), name)
	copyTree(t, src, dst)
	switch name {
	case "basics":
		lt.Must(t, os.Chmod(filepath.Join(dst, "data/sub/d2"), 0o600))
		lt.Must(t, os.Chmod(filepath.Join(dst, "data/sub"), 0o750))
		lt.Must(t, os.WriteFile(filepath.Join(dst, "plain.tar"), lt.Tar(
			lt.Dir("plain", 0o755),
			lt.File("plain/p1", "p1\n", 0o644),
			lt.Owned(lt.File("plain/owned", "owned by 5:6\n", 0o640), 5, 6),
		), 0o644))
		lt.Must(t, os.WriteFile(filepath.Join(dst, "archive.tar.gz"), lt.Gzip(lt.Tar(
			lt.Dir("x", 0o750),
			lt.File("x/f", "in the archive\n", 0o600),
			lt.Symlink("x/l", "f"),
			lt.Owned(lt.Dir("y", 0o755), 3, 4),
			lt.Owned(lt.File("y/g", "g\n", 0o644), 3, 4),
		)), 0o644))
		lt.Must(t, os.WriteFile(filepath.Join(dst, "pkg.deb"), debPackage(t), 0o644))
	case "modern":
		lt.Must(t, os.Chmod(filepath.Join(dst, "data/d1"), 0o600))
	}
	return dst
}

// copyTree copies a directory of regular files, directories and
// symlinks.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, out)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// debPackage builds a tiny Debian package with dpkg-deb: strata-hello,
// one script in /usr/bin.
func debPackage(t testing.TB) []byte {
	t.Helper()
	needTool(t, "dpkg-deb")
	dir := t.TempDir()
	root := filepath.Join(dir, "pkg")
	lt.Must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	lt.Must(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	lt.Must(t, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(
		"Package: strata-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: strata tests <tests@example.com>\nDescription: says hello\n"), 0o644))
	lt.Must(t, os.WriteFile(filepath.Join(root, "usr/bin/strata-hello"), []byte("#!/bin/sh\necho hello from a deb\n"), 0o755))
	out := filepath.Join(dir, "pkg.deb")
	mustRun(t, "dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, out)
	b, err := os.ReadFile(out)
	lt.Must(t, err)
	return b
}

// buildBase imports the cached debootstrap minbase tree as dir/base:base
// and returns that reference.
func buildBase(t testing.TB, dir string) string {
	t.Helper()
	src := minbaseTar(t.(*testing.T))
	ref := filepath.Join(dir, "base") + ":base"
	strata(t, "import", "--created", "2024-01-02T03:04:05Z", src, ref)
	return ref
}

// imageFacts are what the corpus compares between builders.
type imageFacts struct {
	tree    map[string]string
	config  map[string]string
	history int
}

// configFields are the config fields compared.
var configFields = []string{"Env", "Cmd", "Entrypoint", "User", "WorkingDir", "Labels", "ExposedPorts", "Volumes", "StopSignal", "OnBuild"}

// factsOf unpacks LAYOUT:REF (as root, with a store of its own) and
// describes its tree and config.
func factsOf(t testing.TB, ref string) imageFacts {
	t.Helper()
	dir := t.TempDir()
	b := filepath.Join(dir, "b")
	strata(t, "unpack", "--root", filepath.Join(dir, "store"), ref, b)
	tree := lt.DescribeTree(t, filepath.Join(b, "rootfs"))
	drop := regexp.MustCompile(` (mtime|links)=\S+`)
	for k, v := range tree {
		tree[k] = drop.ReplaceAllString(v, "")
	}
	ldir, r, _ := strings.Cut(ref, ":")
	l, err := layout.Open(ldir)
	lt.Must(t, err)
	defer l.Close()
	img, err := l.Image(r, nil)
	lt.Must(t, err)
	var raw struct {
		Config  map[string]json.RawMessage `json:"config"`
		History []json.RawMessage          `json:"history"`
	}
	lt.Must(t, json.Unmarshal(img.ConfigRaw, &raw))
	f := imageFacts{tree: tree, config: map[string]string{}, history: len(raw.History)}
	for _, k := range configFields {
		// Compared as values: encoders differ in escapes (\u003e).
		var v any
		if len(raw.Config[k]) > 0 {
			lt.Must(t, json.Unmarshal(raw.Config[k], &v))
		}
		b, err := json.Marshal(v)
		lt.Must(t, err)
		s := string(b)
		if s == "null" || s == "{}" || s == "[]" || s == `""` {
			s = ""
		}
		f.config[k] = s
	}
	return f
}

// runtimeFiles are what docker's runtime and tools leave that differ
// from run to run, as the issue allows: logs with times, files only a
// container's runtime makes.
var runtimeFiles = regexp.MustCompile(`^(var/log/|var/cache/debconf/.*-old$|var/cache/ldconfig/|etc/(hostname|hosts|resolv\.conf)$|\.dockerenv$)`)

// compareFacts fails the test where two builds differ.
func compareFacts(t testing.TB, nameA string, a imageFacts, nameB string, b imageFacts) {
	t.Helper()
	ta, tb := map[string]string{}, map[string]string{}
	for k, v := range a.tree {
		if !runtimeFiles.MatchString(k) {
			ta[k] = v
		}
	}
	for k, v := range b.tree {
		if !runtimeFiles.MatchString(k) {
			tb[k] = v
		}
	}
	lt.DiffTrees(t, nameA, ta, nameB, tb)
	for _, k := range configFields {
		if a.config[k] != b.config[k] {
			t.Errorf("config %s: %s %s, %s %s", k, nameA, a.config[k], nameB, b.config[k])
		}
	}
	if a.history != b.history {
		t.Errorf("history: %s has %d entries, %s %d", nameA, a.history, nameB, b.history)
	}
}

// strataBuild runs strata build and returns its stdout (the digest) and
// stderr (the steps).
func strataBuild(t testing.TB, args ...string) (string, string) {
	t.Helper()
	r := runCmd(t, nil, strataBin, append([]string{"build"}, args...)...)
	if r.Code != 0 {
		t.Fatalf("strata build %s: exit %d\n%s\n%s", strings.Join(args, " "), r.Code, tail(r.Stdout, 3000), tail(r.Stderr, 6000))
	}
	return strings.TrimSpace(r.Stdout), r.Stderr
}

// dockerBuild builds with the engine's classic builder and brings the
// image into dir/docker:name.
func dockerBuild(t testing.TB, e *dockerEngine, dir, name string, args ...string) string {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "-f ") {
		// docker 20.10 looks for a Dockerfile only.
		args = append([]string{"-f", filepath.Join(args[len(args)-1], "Containerfile")}, args...)
	}
	cmd := e.command(append([]string{"build", "-t", name}, args...)...)
	cmd.Env = append(cmd.Env, "DOCKER_BUILDKIT=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", strings.Join(args, " "), err, tail(out.String(), 6000))
	}
	saved := filepath.Join(dir, name+".tar")
	e.must(t, "save", "-o", saved, name)
	ref := filepath.Join(dir, "docker") + ":" + name
	strata(t, "load", saved, ref)
	return ref
}

// TestBuildCorpusMatchesDocker builds the corpus with strata, as root
// with both drivers, and with docker 20.10's classic builder on the same
// contexts, and compares the images' trees, configs and histories.
func TestBuildCorpusMatchesDocker(t *testing.T) {
	e := startDockerd(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	mb := filepath.Join(dir, "minbase.tar")
	strata(t, "save", "-o", mb, "--name", "strata-minbase:latest", base)
	e.must(t, "load", "-i", mb)
	store := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out")

	cases := []struct {
		name, driver string
		args         []string
	}{
		{"basics", "vfs", []string{"--build-arg", "VERSION=2.5", "--build-arg", "GLOBAL=from-cli"}},
		{"multistage", "overlay", nil},
		{"multistage-test", "vfs", []string{"--target", "test"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctxName := strings.TrimSuffix(c.name, "-test")
			ctx := buildContext(t, ctxName)
			sargs := append([]string{"--root", store, "--driver", c.driver, "-t", out + ":" + c.name, "--build-arg", "BASE=" + base}, c.args...)
			strataBuild(t, append(sargs, ctx)...)
			dref := dockerBuild(t, e, dir, c.name, append(append([]string{"--build-arg", "BASE=strata-minbase:latest"}, c.args...), ctx)...)
			compareFacts(t, "strata", factsOf(t, out+":"+c.name), "docker", factsOf(t, dref))
		})
	}
	t.Run("onbuild", func(t *testing.T) {
		ctx := buildContext(t, "onbuild")
		strataBuild(t, "--root", store, "-f", filepath.Join(ctx, "Containerfile.parent"), "--build-arg", "BASE="+base, "-t", out+":parent", ctx)
		strataBuild(t, "--root", store, "--build-arg", "PARENT="+out+":parent", "-t", out+":child", ctx)
		dockerBuild(t, e, dir, "parent", "-f", filepath.Join(ctx, "Containerfile.parent"), "--build-arg", "BASE=strata-minbase:latest", ctx)
		dref := dockerBuild(t, e, dir, "child", "--build-arg", "PARENT=parent", ctx)
		compareFacts(t, "strata", factsOf(t, out+":parent"), "docker", factsOf(t, filepath.Join(dir, "docker")+":parent"))
		compareFacts(t, "strata", factsOf(t, out+":child"), "docker", factsOf(t, dref))
	})

	// The images strata built load and run in docker.
	archive := filepath.Join(dir, "basics.tar")
	strata(t, "save", "-o", archive, "--name", "strata-built/basics:1", out+":basics")
	e.must(t, "load", "-i", archive)
	if got := strings.TrimSpace(e.must(t, "run", "--rm", "--network=none", "strata-built/basics:1", "cat /hello.out /workdir.txt")); got != "hello from a deb\n/home/builder/relative/dir" {
		t.Errorf("docker run of the built image: %q", got)
	}
	if got := strings.TrimSpace(e.must(t, "run", "--rm", "--network=none", "strata-built/basics:1")); got != "hello" {
		t.Errorf("docker run of the built image's CMD: %q", got)
	}
	// podman loads and runs them. These machines refuse raising an
	// rlimit, and podman's defaults raise RLIMIT_NOFILE and NPROC: the
	// test asks for limits below the host's. crun refuses the hybrid
	// cgroup hierarchy here; runc (docker's runtime) takes it.
	proot := podmanRoot(t)
	podman(t, proot, "load", "-i", archive)
	if got := strings.TrimSpace(podman(t, proot, "image", "inspect", "--format", "{{.Config.WorkingDir}} {{.Config.User}}", "strata-built/basics:1")); got != "/home/builder/relative/dir root" {
		t.Errorf("podman image inspect: %q", got)
	}
	if got := strings.TrimSpace(podman(t, proot, "run", "--rm", "--runtime", needTool(t, "runc"), "--network=none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "strata-built/basics:1", "cat /hello.out /workdir.txt")); got != "hello from a deb\n/home/builder/relative/dir" {
		t.Errorf("podman run of the built image: %q", got)
	}
	// strata run runs them.
	r := runCmd(t, nil, strataBin, "--quiet", "run", "--root", store, "--rm", out+":basics", "cat /hello.out /home/builder/work/out.txt")
	if r.Code != 0 || r.Stdout != "hello from a deb\n1234 /home/builder 2.5\n" {
		t.Errorf("strata run of the built image: exit %d, %q, %s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestBuildModernMatchesBuildah builds what docker's classic builder
// lacks (COPY --chmod, RUN --mount of every kind) with strata and with
// buildah on the same context.
func TestBuildModernMatchesBuildah(t *testing.T) {
	needRoot(t)
	needTool(t, "buildah")
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	ctx := buildContext(t, "modern")
	secret := filepath.Join(dir, "token")
	lt.Must(t, os.WriteFile(secret, []byte("s3cret"), 0o600))
	out := filepath.Join(dir, "out")
	strataBuild(t, "--root", filepath.Join(dir, "store"), "--secret", "id=token,src="+secret, "--build-arg", "BASE="+base, "-t", out+":modern", ctx)

	// buildah, with storage of its own, from the same base as an oci:
	// layout (lower-case paths, as buildah wants them).
	broot := filepath.Join(dir, "buildah")
	sargs := []string{"--root", filepath.Join(broot, "root"), "--runroot", filepath.Join(broot, "runroot"), "--storage-driver", "vfs"}
	baseDir, baseRef, _ := strings.Cut(base, ":")
	lower, err := os.MkdirTemp("", "strata-buildah-")
	lt.Must(t, err)
	t.Cleanup(func() { os.RemoveAll(lower) })
	copyTree(t, baseDir, filepath.Join(lower, "base"))
	baseDir = filepath.Join(lower, "base")
	bout := filepath.Join(dir, "buildah-out")
	args := append(append([]string{}, sargs...), "bud", "--isolation", "chroot", "--secret", "id=token,src="+secret,
		"--build-arg", "BASE=oci:"+baseDir+":"+baseRef, "-t", "modern", ctx)
	// buildah keeps RUN --mount=type=cache directories in
	// $TMPDIR/buildah-cache-UID, whatever its --root: a directory of this
	// test's own starts them empty, as strata's new store does.
	bud := exec.Command(needTool(t, "buildah"), args...)
	bud.Env = append(os.Environ(), "TMPDIR="+t.TempDir())
	if o, err := bud.CombinedOutput(); err != nil {
		t.Fatalf("buildah bud: %v\n%s", err, tail(string(o), 6000))
	}
	mustRun(t, "buildah", append(append([]string{}, sargs...), "push", "modern", "oci:"+bout+":modern")...)
	// buildah leaves the secrets' mount point and labels itself.
	bf := factsOf(t, bout+":modern")
	delete(bf.tree, "run/secrets")
	bf.config["Labels"] = regexp.MustCompile(`"io\.buildah\.version":"[^"]*",?`).ReplaceAllString(bf.config["Labels"], "")
	if bf.config["Labels"] == "{}" {
		bf.config["Labels"] = ""
	}
	compareFacts(t, "strata", factsOf(t, out+":modern"), "buildah", bf)
}

// TestBuildHeredocs checks heredocs directly: docker 20.10's classic
// builder and buildah 1.28 do not read them.
func TestBuildHeredocs(t *testing.T) {
	needRoot(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	ctx := buildContext(t, "heredoc")
	out := filepath.Join(dir, "out")
	strataBuild(t, "--root", filepath.Join(dir, "store"), "--build-arg", "BASE="+base, "-t", out+":h", ctx)
	b := filepath.Join(dir, "b")
	strata(t, "unpack", "--root", filepath.Join(dir, "ustore"), out+":h", b)
	for name, want := range map[string]string{
		"heredoc-1":      "one\ntwo\n",
		"heredoc-bash":   "bash 5\n",
		"heredoc-script": "script /dev/pipes/EOT\n",
		"etc/greeting":   "hello world\n",
		"etc/raw":        "hello $NAME\n",
	} {
		got, err := os.ReadFile(filepath.Join(b, "rootfs", name))
		if err != nil || string(got) != want {
			t.Errorf("/%s: %q (%v), want %q", name, got, err, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(b, "rootfs/dev/pipes")); err == nil {
		t.Errorf("/dev/pipes, the heredoc script's mount point, is in the image")
	}
}

// stepLines are the "STEP n/N: ..." lines of a build's output with what
// followed each: "cached" or a time.
func stepLines(stderr string) map[string]string {
	out := map[string]string{}
	var cur string
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.Index(l, ": "); strings.HasPrefix(l, "STEP ") && i > 0 {
			cur = l[i+2:]
			continue
		}
		if strings.HasPrefix(l, "--> ") && cur != "" {
			out[cur] = strings.TrimPrefix(l, "--> ")
			cur = ""
		}
	}
	return out
}

// TestBuildCache: an unchanged rebuild runs nothing and gives the same
// image; a changed COPY source runs again from that step on; the cache
// survives in the store and prune empties it; --cache-to and
// --cache-from carry it to another store.
func TestBuildCache(t *testing.T) {
	needRoot(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	ctx := filepath.Join(dir, "ctx")
	lt.Must(t, os.MkdirAll(filepath.Join(ctx, "src"), 0o755))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "src/a"), []byte("a\n"), 0o644))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "src/b"), []byte("b\n"), 0o644))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(`ARG BASE
FROM $BASE
RUN echo first-run > /first
COPY src/a /a
RUN cat /a > /a-copy
COPY src/b /b
RUN cat /b > /b-copy
ENV DONE=1
`), 0o644))
	store := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out")
	args := []string{"--root", store, "--build-arg", "BASE=" + base, "--driver", "overlay"}
	d1, _ := strataBuild(t, append(args, "-t", out+":v1", ctx)...)
	d2, log2 := strataBuild(t, append(args, "-t", out+":v2", ctx)...)
	if d1 != d2 {
		t.Errorf("unchanged rebuild: %s, then %s", d1, d2)
	}
	for step, how := range stepLines(log2) {
		if !strings.HasPrefix(step, "FROM") && how != "cached" {
			t.Errorf("unchanged rebuild ran %q (%s)", step, how)
		}
	}
	// A one-file change runs again from its COPY on.
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "src/b"), []byte("b changed\n"), 0o644))
	d3, log3 := strataBuild(t, append(args, "-t", out+":v3", ctx)...)
	if d3 == d2 {
		t.Errorf("a changed source gave the same image")
	}
	steps := stepLines(log3)
	for _, s := range []string{"RUN echo first-run > /first", "COPY src/a /a", "RUN cat /a > /a-copy"} {
		if steps[s] != "cached" {
			t.Errorf("after changing src/b, %q was %q, want cached", s, steps[s])
		}
	}
	for _, s := range []string{"COPY src/b /b", "RUN cat /b > /b-copy", "ENV DONE=1"} {
		if steps[s] == "cached" {
			t.Errorf("after changing src/b, %q came from the cache", s)
		}
	}
	// mtime alone is no change.
	future := time.Now().Add(time.Hour)
	lt.Must(t, os.Chtimes(filepath.Join(ctx, "src/a"), future, future))
	if d4, _ := strataBuild(t, append(args, "-t", out+":v4", ctx)...); d4 != d3 {
		t.Errorf("touching a source changed the image: %s, then %s", d3, d4)
	}

	// --cache-to, then a build in a new store with --cache-from runs
	// nothing either.
	cacheDir := filepath.Join(dir, "exported")
	strataBuild(t, append(args, "--cache-to", "oci:"+cacheDir+":buildcache", ctx)...)
	store2 := filepath.Join(dir, "store2")
	d5, log5 := strataBuild(t, "--root", store2, "--build-arg", "BASE="+base, "--cache-from", "oci:"+cacheDir+":buildcache", ctx)
	if d5 != d3 {
		t.Errorf("build from the exported cache: %s, want %s", d5, d3)
	}
	for step, how := range stepLines(log5) {
		if !strings.HasPrefix(step, "FROM") && how != "cached" {
			t.Errorf("build with --cache-from ran %q (%s)", step, how)
		}
	}

	// prune empties the cache: the next build runs every step.
	strata(t, "--root", store, "build", "prune")
	_, log6 := strataBuild(t, append(args, ctx)...)
	for step, how := range stepLines(log6) {
		if how == "cached" {
			t.Errorf("after prune, %q came from the cache", step)
		}
	}
	fsckClean(t, out)
	fsckClean(t, filepath.Join(store, "build", "cache"))
}

// TestBuildSecretNeverStored: a secret used by RUN --mount=type=secret is
// in no blob of the output or the cache, no file of the store, and not in
// the history.
func TestBuildSecretNeverStored(t *testing.T) {
	needRoot(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	const value = "do-not-store-5e6f"
	secret := filepath.Join(t.TempDir(), "s")
	lt.Must(t, os.WriteFile(secret, []byte(value), 0o600))
	ctx := filepath.Join(dir, "ctx")
	lt.Must(t, os.MkdirAll(ctx, 0o755))
	// The Containerfile names the secret by its hash alone: its text goes
	// into history.
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(value)))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(`ARG BASE
FROM $BASE
RUN --mount=type=secret,id=s test "$(sha256sum < /run/secrets/s | cut -c1-64)" = "`+sum+`" && echo used > /used
RUN --mount=type=secret,id=s,env=SECRET_VALUE test "$(printf %s "$SECRET_VALUE" | sha256sum | cut -c1-64)" = "`+sum+`"
RUN --mount=type=secret,id=s,target=/etc/app/secret,mode=0444,uid=5 test -r /etc/app/secret && test "$(stat -c %u /etc/app/secret)" = 5
`), 0o644))
	store := filepath.Join(dir, "store")
	out := filepath.Join(dir, "out")
	archive := filepath.Join(dir, "img.tar")
	strataBuild(t, "--root", store, "--secret", "id=s,src="+secret, "--build-arg", "BASE="+base, "-t", out+":s", "--output", "docker-archive:"+archive+":s:1", "--cache-to", "oci:"+filepath.Join(dir, "cache")+":c", ctx)
	for _, root := range []string{out, store, filepath.Join(dir, "cache"), archive} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if strings.Contains(p, "/snapshots/") && strings.HasSuffix(p, "/fs") {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(value)) {
				t.Errorf("%s holds the secret", p)
			}
			if bytes.Contains(gunzipAll(b), []byte(value)) {
				t.Errorf("%s holds the secret, compressed", p)
			}
			return nil
		})
		lt.Must(t, err)
	}
	f := factsOf(t, out+":s")
	for p := range f.tree {
		if strings.HasPrefix(p, "run/secrets") || strings.HasPrefix(p, "etc/app") {
			t.Errorf("the secret's mount point %s is in the image", p)
		}
	}
}

// gunzipAll decompresses b when it is gzip, else returns nothing.
func gunzipAll(b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil
	}
	out, _ := io.ReadAll(zr)
	return out
}

// TestBuildReproducible: two builds with one --timestamp, the second
// with --no-cache in another store, give one digest; so does
// SOURCE_DATE_EPOCH.
func TestBuildReproducible(t *testing.T) {
	needRoot(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	ctx := buildContext(t, "multistage")
	args := []string{"--build-arg", "BASE=" + base, "--timestamp", "2025-01-01T00:00:00Z"}
	d1, _ := strataBuild(t, append(append([]string{"--root", filepath.Join(dir, "s1")}, args...), ctx)...)
	d2, _ := strataBuild(t, append(append([]string{"--root", filepath.Join(dir, "s2"), "--no-cache", "--driver", "overlay"}, args...), ctx)...)
	if d1 != d2 {
		t.Errorf("two builds with one --timestamp: %s and %s", d1, d2)
	}
	cmd := exec.Command(strataBin, "build", "--root", filepath.Join(dir, "s3"), "--build-arg", "BASE="+base, ctx)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), 10))
	o, err := cmd.Output()
	lt.Must(t, err)
	if d3 := strings.TrimSpace(string(o)); d3 != d1 {
		t.Errorf("SOURCE_DATE_EPOCH build: %s, want %s", d3, d1)
	}
}

// TestBuildRootless builds every corpus context as the unprivileged test
// user, with its subordinate ID range (owners real), the drivers
// alternating: each image equals root's build of the same context. A
// user without a range builds too: RUN runs as root, and a chown to
// another ID fails in the step, as with buildah.
func TestBuildRootless(t *testing.T) {
	uid, gid := rootlessAccount(t)
	needTool(t, "crun")
	dir := rootlessDir(t, uid, gid)
	base := buildBase(t, t.TempDir())
	// The user reads the base from a layout of its own.
	ubase := filepath.Join(dir, "base")
	copyTree(t, strings.TrimSuffix(base, ":base"), ubase)
	rlChownTree(t, ubase, uid, gid)
	rootOut := filepath.Join(t.TempDir(), "out")
	// The secret the modern context reads, the user's own file.
	secret := filepath.Join(dir, "token")
	lt.Must(t, os.WriteFile(secret, []byte("s3cret"), 0o600))
	lt.Must(t, os.Chown(secret, uid, gid))
	for _, c := range rootlessBuildCases(secret) {
		t.Run(c.ctx+"-"+c.driver, func(t *testing.T) {
			rootlessCorpusBuild(t, c, dir, ubase, base, rootOut, uid, gid)
		})
	}
	t.Run("single-id", func(t *testing.T) {
		u := rlEnsureUser(t, rootlessSingleUser, true)
		suid, _ := strconv.Atoi(u.Uid)
		sgid, _ := strconv.Atoi(u.Gid)
		sdir := rootlessDir(t, suid, sgid)
		sbase := filepath.Join(sdir, "base")
		copyTree(t, strings.TrimSuffix(base, ":base"), sbase)
		rlChownTree(t, sbase, suid, sgid)
		ctx := filepath.Join(sdir, "ctx")
		lt.Must(t, os.MkdirAll(ctx, 0o755))
		lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte("ARG BASE\nFROM $BASE\nRUN id -u > /uid && echo ok > /ok\nCOPY --chown=1000:1000 Containerfile /owned\n"), 0o644))
		rlChownTree(t, sdir, suid, sgid)
		run := func(args ...string) result {
			return asUser(t, rootlessSingleUser, sdir, append([]string{"build", "--root", filepath.Join(sdir, "store"), "--build-arg", "BASE=" + sbase + ":base"}, args...)...)
		}
		if r := run("-t", filepath.Join(sdir, "out")+":ok", ctx); r.Code != 0 {
			t.Fatalf("single-ID build: exit %d\n%s", r.Code, tail(r.Stderr, 4000))
		}
		f := factsOf(t, filepath.Join(sdir, "out")+":ok")
		if !strings.Contains(f.tree["owned"], "owner=1000:1000") {
			t.Errorf("COPY --chown as a single-ID user: %s", f.tree["owned"])
		}
		lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte("ARG BASE\nFROM $BASE\nRUN touch /f && chown 1000 /f\n"), 0o644))
		r := run(ctx)
		if r.Code == 0 {
			t.Fatalf("chown to an unmapped ID succeeded with a single-ID mapping")
		}
		if !strings.Contains(r.Stderr, "chown") {
			t.Errorf("the failed chown is not reported:\n%s", tail(r.Stderr, 3000))
		}
	})
}

// TestBuildErrors: what a user gets wrong is reported with the file and
// line, exit status 1 or 2, and nothing is tagged.
func TestBuildErrors(t *testing.T) {
	needRoot(t)
	needTool(t, "crun")
	dir := t.TempDir()
	base := buildBase(t, dir)
	out := filepath.Join(dir, "out")
	for _, c := range []struct{ name, file, want string }{
		{"missing source", "FROM " + base + "\nCOPY nothere /x\n", "line 2"},
		{"failing run", "FROM " + base + "\nENV A=1\nRUN exit 3\n", "returned a non-zero code: 3"},
		{"unknown instruction", "FROM " + base + "\nFROBNICATE x\n", "line 2"},
		{"no from", "RUN true\n", "FROM"},
		{"unknown stage", "FROM " + base + "\nCOPY --from=nope /x /y\n", "nope"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := filepath.Join(t.TempDir(), "ctx")
			lt.Must(t, os.MkdirAll(ctx, 0o755))
			lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(c.file), 0o644))
			r := runCmd(t, nil, strataBin, "--quiet", "build", "--root", filepath.Join(dir, "store"), "-t", out+":"+strings.ReplaceAll(c.name, " ", "-"), ctx)
			if r.Code == 0 {
				t.Fatalf("succeeded")
			}
			if !strings.Contains(r.Stderr, c.want) {
				t.Errorf("error %q does not say %q", r.Stderr, c.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, "index.json")); err == nil {
		l, err := layout.Open(out)
		lt.Must(t, err)
		ents, _ := l.List()
		l.Close()
		if len(ents) != 0 {
			t.Errorf("failed builds named images: %v", ents)
		}
	}
}

// describeTar lists a tar's names, for messages.
func describeTar(b []byte) string {
	tr := tar.NewReader(bytes.NewReader(b))
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// TestBuildAddURL: ADD fetches a URL (mode 0600, mtime from
// Last-Modified, as docker gives it) and checks --checksum.
func TestBuildAddURL(t *testing.T) {
	needRoot(t)
	body := []byte("downloaded content\n")
	modified := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/data.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", modified.Format(http.TimeFormat))
		w.Write(body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	ctx := filepath.Join(dir, "ctx")
	lt.Must(t, os.MkdirAll(ctx, 0o755))
	sum := fmt.Sprintf("sha256:%x", sha256.Sum256(body))
	write := func(cf string) {
		lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(cf), 0o644))
	}
	write(fmt.Sprintf("FROM scratch\nADD --checksum=%s %s/files/data.txt /dl/\nADD %s/files/data.txt /dl/renamed\n", sum, srv.URL, srv.URL))
	out := filepath.Join(dir, "out")
	strataBuild(t, "--root", filepath.Join(dir, "store"), "-t", out+":u", ctx)
	f := factsOf(t, out+":u")
	for _, p := range []string{"dl/data.txt", "dl/renamed"} {
		if !strings.Contains(f.tree[p], "type=100000 mode=600 owner=0:0 size=19") {
			t.Errorf("%s: %s", p, f.tree[p])
		}
	}
	b := filepath.Join(dir, "b")
	strata(t, "unpack", "--root", filepath.Join(dir, "ustore"), out+":u", b)
	fi, err := os.Stat(filepath.Join(b, "rootfs/dl/data.txt"))
	lt.Must(t, err)
	if !fi.ModTime().Equal(modified) {
		t.Errorf("mtime %s, want Last-Modified %s", fi.ModTime(), modified)
	}
	write(fmt.Sprintf("FROM scratch\nADD --checksum=sha256:%064x %s/files/data.txt /dl/\n", 1, srv.URL))
	r := runCmd(t, nil, strataBin, "--quiet", "build", "--root", filepath.Join(dir, "store"), ctx)
	if r.Code == 0 || !strings.Contains(r.Stderr, "checksum mismatch") {
		t.Errorf("a wrong --checksum: exit %d, %s", r.Code, r.Stderr)
	}
	write(fmt.Sprintf("FROM scratch\nCOPY %s/files/data.txt /dl/\n", srv.URL))
	if r := runCmd(t, nil, strataBin, "--quiet", "build", "--root", filepath.Join(dir, "store"), ctx); r.Code == 0 {
		t.Errorf("COPY of a URL succeeded")
	}
}

// TestBuildRegistry: FROM a registry image (pulled into the store once),
// --output docker:// pushes the image, and --cache-to/--cache-from carry
// the cache through a registry to another store.
func TestBuildRegistry(t *testing.T) {
	needRoot(t)
	reg := regStart(t, regConfig{})
	host := reg.listen
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	host0, err := layout.ParsePlatform("")
	lt.Must(t, err)
	regPutImage(t, src, "v1", host0, []string{"/bin/true"},
		regTarLayer(t, map[string][]byte{"etc/base": []byte("base\n")}, nil))
	strata(t, "push", src+":v1", host+"/strata/base:1")
	ctx := filepath.Join(dir, "ctx")
	lt.Must(t, os.MkdirAll(ctx, 0o755))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "f"), []byte("f\n"), 0o644))
	lt.Must(t, os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte("FROM "+host+"/strata/base:1\nCOPY f /f\nENV A=1\n"), 0o644))
	store := filepath.Join(dir, "store")
	d1, _ := strataBuild(t, "--root", store, "--output", "docker://"+host+"/strata/built:1", "--cache-to", "docker://"+host+"/strata/cache:1", ctx)
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/strata/built:1"); got.String() != d1 {
		t.Errorf("pushed %s, built %s", got, d1)
	}
	d2, log2 := strataBuild(t, "--root", filepath.Join(dir, "store2"), "--cache-from", "docker://"+host+"/strata/cache:1", ctx)
	if d2 != d1 {
		t.Errorf("build from the registry cache: %s, want %s", d2, d1)
	}
	for step, how := range stepLines(log2) {
		if !strings.HasPrefix(step, "FROM") && how != "cached" {
			t.Errorf("build with --cache-from a registry ran %q (%s)", step, how)
		}
	}
	// The base was pulled once: the registry's copy can go.
	reg.stop()
	if d3, _ := strataBuild(t, "--root", store, ctx); d3 != d1 {
		t.Errorf("rebuild without the registry: %s, want %s", d3, d1)
	}
}
