package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/testenv"
	"github.com/strata-oci/strata/layout"
)

// dockerEngine is a private dockerd started for one test.
type dockerEngine struct {
	host    string // DOCKER_HOST value
	client  string // docker client binary
	version string // the server's version, as it reports it
	// containerdStore is true when images live in containerd's image
	// store (Docker 25+'s containerd-snapshotter feature): image IDs are
	// manifest digests there, config digests otherwise.
	containerdStore bool
}

// docker26Dir holds Debian trixie's docker.io and docker-cli unpacked by
// tests/setup.sh: Docker 26 beside the system's Docker 20.10.
const docker26Dir = "/var/cache/strata-tests/docker26"

// engineConfig says which dockerd to start and how.
type engineConfig struct {
	dockerd, client string
	// path is put in front of dockerd's PATH, for its helpers
	// (docker-proxy, docker-init); containerd and runc come from the
	// system either way.
	path            string
	containerdStore bool
}

// startDockerd starts Debian 12's dockerd (20.10). Every test that needs a
// Docker engine and does not ask for a version uses it.
func startDockerd(t testing.TB) *dockerEngine {
	t.Helper()
	needRoot(t)
	dockerd := needTool(t, "dockerd")
	client := "/usr/bin/docker"
	if _, err := os.Stat(client); err != nil {
		client = needTool(t, "docker")
	}
	return startEngine(t, engineConfig{dockerd: dockerd, client: client})
}

// startDocker26 starts Debian trixie's dockerd 26 from docker26Dir, with
// the classic graph-driver image store or, with containerdStore, the
// containerd image store. Like a missing tool, it is skipped (or fails
// under `make test`) when setup.sh has not unpacked it.
func startDocker26(t testing.TB, containerdStore bool) *dockerEngine {
	t.Helper()
	needRoot(t)
	dockerd := filepath.Join(docker26Dir, "usr/sbin/dockerd")
	client := filepath.Join(docker26Dir, "usr/bin/docker")
	for _, f := range []string{dockerd, client} {
		testenv.RequireFile(t, f, "Docker 26, which `make test-deps` unpacks from Debian trixie's docker.io and docker-cli into "+docker26Dir)
	}
	needTool(t, "containerd")
	needTool(t, "runc")
	e := startEngine(t, engineConfig{
		dockerd: dockerd, client: client,
		path:            filepath.Join(docker26Dir, "usr/sbin"),
		containerdStore: containerdStore,
	})
	major, _, _ := strings.Cut(e.version, ".")
	if n, err := strconv.Atoi(major); err != nil || n < 25 {
		t.Fatalf("%s is Docker %q, want 25 or later", dockerd, e.version)
	}
	return e
}

// startEngine starts dockerd as root with its own data and exec roots,
// socket, pid file and daemon.json (the host's /etc/docker is not read),
// no networking, and waits until it answers. Engines of both versions can
// run at once. It is stopped (by its pid file), whatever it mounted is
// unmounted and its directories are removed when the test ends.
func startEngine(t testing.TB, c engineConfig) *dockerEngine {
	t.Helper()
	// Socket paths are limited to 108 bytes: keep the roots short.
	root, err := os.MkdirTemp("/tmp", "sd-")
	if err != nil {
		t.Fatal(err)
	}
	data, exe := filepath.Join(root, "data"), filepath.Join(root, "exec")
	sock := filepath.Join(root, "docker.sock")
	pidFile := filepath.Join(root, "docker.pid")
	daemonJSON := filepath.Join(root, "daemon.json")
	conf := "{}"
	if c.containerdStore {
		conf = `{"features":{"containerd-snapshotter":true}}`
	}
	if err := os.WriteFile(daemonJSON, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(root, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.dockerd, "--config-file", daemonJSON, "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--data-root", data, "--exec-root", exe, "-H", "unix://"+sock, "--pidfile", pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if c.path != "" {
		cmd.Env = append(os.Environ(), "PATH="+c.path+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	// Its own process group, so that nothing of it outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", c.dockerd, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	e := &dockerEngine{host: "unix://" + sock, client: c.client, containerdStore: c.containerdStore}
	t.Cleanup(func() {
		stopDockerd(t, cmd.Process.Pid, pidFile, exited)
		logFile.Close()
		unmountUnder(root)
		if err := os.RemoveAll(root); err != nil {
			t.Logf("remove %s: %v", root, err)
		}
	})
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("%s exited: %v\n%s", c.dockerd, err, tail(string(log), 3000))
		default:
		}
		r := e.run(t, "version", "--format", "{{.Server.Version}}")
		if r.Code == 0 {
			e.version = strings.TrimSpace(r.Stdout)
			if c.containerdStore {
				// The feature is silently off in engines that lack it.
				driver := strings.TrimSpace(e.must(t, "info", "--format", "{{range .DriverStatus}}{{index . 1}} {{end}}"))
				if !strings.Contains(driver, "io.containerd.snapshotter") {
					t.Fatalf("dockerd %s did not turn on the containerd image store: driver status %q", e.version, driver)
				}
			}
			t.Logf("dockerd %s at %s (containerd image store: %v)", e.version, sock, c.containerdStore)
			return e
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("%s did not answer within 90s: %s\n%s", c.dockerd, r.Stderr, tail(string(log), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// stopDockerd stops dockerd by the pid in its pid file (or the pid it was
// started with) and waits for it: SIGTERM, then SIGKILL of its group.
func stopDockerd(t testing.TB, startPid int, pidFile string, exited chan error) {
	pid := startPid
	if b, err := os.ReadFile(pidFile); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && p > 0 {
			pid = p
		}
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Logf("dockerd %d ignored SIGTERM; killing its process group", pid)
		_ = syscall.Kill(-startPid, syscall.SIGKILL)
		<-exited
	}
	// The managed containerd and shims are in the same group.
	_ = syscall.Kill(-startPid, syscall.SIGKILL)
}

// unmountUnder lazily unmounts whatever dockerd left mounted under dir.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
			mounts = append(mounts, f[1])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// command is the docker client against this engine, not yet started.
func (e *dockerEngine) command(args ...string) *exec.Cmd {
	cmd := exec.Command(e.client, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	return cmd
}

// run runs the docker client against this engine.
func (e *dockerEngine) run(t testing.TB, args ...string) result {
	t.Helper()
	cmd := e.command(args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run docker %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// must runs the docker client and fails the test unless it exits 0.
func (e *dockerEngine) must(t testing.TB, args ...string) string {
	t.Helper()
	r := e.run(t, args...)
	if r.Code != 0 {
		t.Fatalf("docker %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// TestDockerLoadRunSave writes docker-archives that a real Docker engine
// loads under the right names and runs, and reads back what docker save
// writes.
func TestDockerLoadRunSave(t *testing.T) {
	e := startDockerd(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	a := makeImage(t, src, "docker-a", "linux/amd64", "", "example.com/strata/a:1")
	makeImage(t, src, "docker-b", "linux/amd64", "", "b")

	// Two images in one archive, one renamed on the way by a copy.
	strata(t, "copy", "--format", "docker", "oci:"+src+":b", "oci:"+src+":example.com/strata/b:2")
	archive := filepath.Join(dir, "two.tar")
	strata(t, "save", "-o", archive, src+":example.com/strata/a:1", src+":example.com/strata/b:2")
	out := e.must(t, "load", "-i", archive)
	for _, want := range []string{"example.com/strata/a:1", "example.com/strata/b:2"} {
		if !strings.Contains(out, "Loaded image: "+want) {
			t.Fatalf("docker load did not load %s:\n%s", want, out)
		}
	}
	if got := e.must(t, "run", "--rm", "--network=none", "example.com/strata/a:1"); strings.TrimSpace(got) != "docker-a" {
		t.Fatalf("docker run a: %q", got)
	}
	if got := e.must(t, "run", "--rm", "--network=none", "example.com/strata/b:2", "/bin/busybox", "echo", "hi"); strings.TrimSpace(got) != "hi" {
		t.Fatalf("docker run b: %q", got)
	}
	// Docker's image ID is the config digest.
	id := strings.TrimSpace(e.must(t, "image", "inspect", "--format", "{{.Id}}", "example.com/strata/a:1"))
	l, err := layout.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.ReadImage(a.Desc)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	if digest.Digest(id) != img.Manifest.Config.Digest {
		t.Fatalf("docker image id %s, want config %s", id, img.Manifest.Config.Digest)
	}

	// An uncompressed copy through stdout loads too.
	r := runCmd(t, nil, strataBin, "--quiet", "copy", "--compression", "none", "oci:"+src+":b", "docker-archive:-:example.com/strata/plain:1")
	if r.Code != 0 {
		t.Fatalf("copy to stdout: %s", r.Stderr)
	}
	plain := filepath.Join(dir, "plain.tar")
	if err := os.WriteFile(plain, []byte(r.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	e.must(t, "load", "-i", plain)
	if got := e.must(t, "run", "--rm", "--network=none", "example.com/strata/plain:1"); strings.TrimSpace(got) != "docker-b" {
		t.Fatalf("docker run plain: %q", got)
	}

	// docker save (the legacy format in Docker 20.10) loads into strata
	// with the name and the config docker has.
	saved := filepath.Join(dir, "saved.tar")
	e.must(t, "save", "-o", saved, "example.com/strata/a:1", "example.com/strata/b:2")
	dst := filepath.Join(dir, "dst")
	strata(t, "load", saved, dst)
	fsckClean(t, dst)
	l, err = layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, n := range []string{"example.com/strata/a:1", "example.com/strata/b:2"} {
		got, err := l.Image(n, nil)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		want := strings.TrimSpace(e.must(t, "image", "inspect", "--format", "{{.Id}}", n))
		if got.Manifest.Config.Digest.String() != want {
			t.Fatalf("%s: config %s, docker says %s", n, got.Manifest.Config.Digest, want)
		}
	}
	// And round again: strata's archive of what docker saved runs.
	again := filepath.Join(dir, "again.tar")
	strata(t, "save", "-o", again, dst+":example.com/strata/a:1")
	e.must(t, "rmi", "example.com/strata/a:1")
	e.must(t, "load", "-i", again)
	if got := e.must(t, "run", "--rm", "--network=none", "example.com/strata/a:1"); strings.TrimSpace(got) != "docker-a" {
		t.Fatalf("docker run after a round trip: %q", got)
	}
}
