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
	"github.com/strata-oci/strata/layout"
)

// dockerEngine is a private dockerd started for one test.
type dockerEngine struct {
	host   string // DOCKER_HOST value
	client string // docker client binary
}

// startDockerd starts Debian's dockerd as root with its own data and exec
// roots and socket, no networking, and waits until it answers. It is
// stopped (by its pid file) and its directories removed when the test
// ends. Every test that needs a Docker engine uses it.
func startDockerd(t testing.TB) *dockerEngine {
	t.Helper()
	needRoot(t)
	dockerd := needTool(t, "dockerd")
	client := "/usr/bin/docker"
	if _, err := os.Stat(client); err != nil {
		client = needTool(t, "docker")
	}
	// Socket paths are limited to 108 bytes: keep the roots short.
	root, err := os.MkdirTemp("/tmp", "sd-")
	if err != nil {
		t.Fatal(err)
	}
	data, exe := filepath.Join(root, "data"), filepath.Join(root, "exec")
	sock := filepath.Join(root, "docker.sock")
	pidFile := filepath.Join(root, "docker.pid")
	logFile, err := os.Create(filepath.Join(root, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(dockerd, "--iptables=false", "--ip6tables=false", "--bridge=none",
		"--data-root", data, "--exec-root", exe, "-H", "unix://"+sock, "--pidfile", pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that nothing of it outlives the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	e := &dockerEngine{host: "unix://" + sock, client: client}
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
			t.Fatalf("dockerd exited: %v\n%s", err, tail(string(log), 3000))
		default:
		}
		r := e.run(t, "version", "--format", "{{.Server.Version}}")
		if r.Code == 0 {
			t.Logf("dockerd %s at %s", strings.TrimSpace(r.Stdout), sock)
			return e
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("dockerd did not answer within 90s: %s\n%s", r.Stderr, tail(string(log), 3000))
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

// run runs the docker client against this engine.
func (e *dockerEngine) run(t testing.TB, args ...string) result {
	t.Helper()
	cmd := exec.Command(e.client, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
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
