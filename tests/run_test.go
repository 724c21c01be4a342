package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// The tests of strata run: real containers through crun and runc, as
// root and as the unprivileged test user, from images and bundles.

// runImageIn writes, into a new layout at dir, a one-layer image of
// busybox-static with every applet linked in /bin, users root and alice
// (1000, also in group wheel) with a private home, GREETING in its
// environment, /home as working directory and cmd as its command, and
// returns LAYOUT:v1.
func runImageIn(t *testing.T, dir string, cmd ...string) string {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is required by this test: %v", err)
	}
	entries := []lt.Entry{lt.Dir("bin", 0o755), lt.File("bin/busybox", string(bb), 0o755)}
	for _, a := range strings.Fields(mustRun(t, "/bin/busybox", "--list")) {
		if a != "busybox" {
			entries = append(entries, lt.Symlink("bin/"+a, "busybox"))
		}
	}
	entries = append(entries,
		lt.Dir("etc", 0o755),
		lt.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644),
		lt.File("etc/group", "root:x:0:\nwheel:x:10:alice\nalice:x:1000:\n", 0o644),
		lt.Dir("home", 0o755),
		lt.Owned(lt.Dir("home/alice", 0o750), 1000, 1000),
		lt.Owned(lt.File("home/alice/notes", "hello alice\n", 0o600), 1000, 1000),
		lt.Dir("root", 0o700),
		lt.Dir("tmp", 0o1777),
	)
	if err := lt.BuildImage(dir, "v1", lt.Image{
		Layers: [][]byte{lt.Tar(entries...)}, Cmd: cmd,
		Env: []string{"GREETING=hello from the image"}, WorkingDir: "/home",
	}); err != nil {
		t.Fatal(err)
	}
	return dir + ":v1"
}

// runtimesUnderTest are the OCI runtimes strata run is tested with, by
// --runtime; each test runs with every one.
func runtimesUnderTest(t *testing.T) []string {
	t.Helper()
	return []string{needTool(t, "crun"), needTool(t, "runc")}
}

// runState lists what the runs under a store left: run directories,
// throwaway bundles and the runtime's containers (its own list, from its
// state root under the store), which must all be empty between runs.
func runState(t *testing.T, store, rt string) string {
	t.Helper()
	var left []string
	for _, d := range []string{"containers", "bundles", filepath.Join("runtimes", filepath.Base(rt))} {
		ents, _ := os.ReadDir(filepath.Join(store, "run", d))
		for _, e := range ents {
			left = append(left, filepath.Join(d, e.Name()))
		}
	}
	root := filepath.Join(store, "run", "runtimes", filepath.Base(rt))
	if _, err := os.Stat(root); err == nil {
		r := runCmd(t, nil, rt, "--root", root, "list", "-q")
		if r.Code != 0 {
			t.Fatalf("%s list: %s", rt, r.Stderr)
		}
		if s := strings.TrimSpace(r.Stdout); s != "" {
			left = append(left, rt+" list: "+s)
		}
	}
	return strings.Join(left, "\n")
}

// runIn runs strata run with the store and runtime given, and returns
// its result.
func runIn(t *testing.T, store, rt string, args ...string) result {
	t.Helper()
	return runCmd(t, nil, strataBin, append([]string{"--quiet", "--root", store, "run", "--runtime", rt}, args...)...)
}

// runOK is runIn expecting exit status 0 and returning stdout.
func runOK(t *testing.T, store, rt string, args ...string) string {
	t.Helper()
	r := runIn(t, store, rt, args...)
	if r.Code != 0 {
		t.Fatalf("strata run %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// TestRunImage runs commands in containers of an image, as root, with
// each runtime and snapshot driver: the image's command and environment,
// exit statuses, -e/-w/-u/--hostname, both networks, bind mounts read-only
// and writable, a tmpfs, and that nothing of a run stays behind (run
// directories, bundles, the runtime's containers, mount points in the
// rootfs).
func TestRunImage(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh", "-c", `echo "$GREETING in $(pwd) as $(id -u)"`)
	host := filepath.Join(dir, "host")
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, rt := range runtimesUnderTest(t) {
		for _, driver := range []string{"overlay", "vfs"} {
			t.Run(filepath.Base(rt)+"/"+driver, func(t *testing.T) {
				store := filepath.Join(dir, "store-"+filepath.Base(rt)+"-"+driver)
				d := []string{"--driver", driver}
				if got, want := runOK(t, store, rt, append(d, img)...), "hello from the image in /home as 0\n"; got != want {
					t.Fatalf("image command printed %q, want %q", got, want)
				}
				if r := runIn(t, store, rt, append(d, img, "sh", "-c", "exit 7")...); r.Code != 7 {
					t.Fatalf("sh -c 'exit 7': exit %d: %s", r.Code, r.Stderr)
				}
				if r := runIn(t, store, rt, append(d, img, "no-such-command")...); r.Code != 127 || !strings.Contains(r.Stderr, "no-such-command") {
					t.Fatalf("a missing command: exit %d, want 127: %s", r.Code, r.Stderr)
				}
				if r := runIn(t, store, rt, append(d, img, "/etc/passwd")...); r.Code != 126 {
					t.Fatalf("a file that is not executable: exit %d, want 126: %s", r.Code, r.Stderr)
				}
				os.Setenv("STRATA_TEST_FROM_HOST", "passed")
				defer os.Unsetenv("STRATA_TEST_FROM_HOST")
				got := runOK(t, store, rt, append(d, "-e", "A=1", "-e", "GREETING=changed", "-e", "STRATA_TEST_FROM_HOST", "-e", "STRATA_TEST_UNSET",
					"-w", "/tmp/made", "-u", "alice", "--hostname", "box", img,
					"sh", "-c", `echo "$(id -u):$(id -g):$(id -G) $(pwd) $A $GREETING $STRATA_TEST_FROM_HOST ${STRATA_TEST_UNSET-unset} $(hostname) $HOSTNAME $HOME"`)...)
				if want := "1000:1000:1000 10 /tmp/made 1 changed passed unset box box /home/alice\n"; got != want {
					t.Fatalf("env, workdir, user, hostname: %q, want %q", got, want)
				}
				if got := runOK(t, store, rt, append(d, "-u", "4242:4343", img, "id")...); !strings.HasPrefix(got, "uid=4242 gid=4343") {
					t.Fatalf("-u 4242:4343: %q", got)
				}
				if r := runIn(t, store, rt, append(d, "-u", "nobody", img, "id")...); r.Code != 125 || !strings.Contains(r.Stderr, "nobody") {
					t.Fatalf("-u with a user the image lacks: exit %d: %s", r.Code, r.Stderr)
				}

				if got := runOK(t, store, rt, append(d, "--network", "none", img, "ls", "/sys/class/net")...); got != "lo\n" {
					t.Fatalf("--network none: interfaces %q, want lo alone", got)
				}
				if got := runOK(t, store, rt, append(d, "--network", "none", img, "sh", "-c", "ip -o link | cut -d: -f2")...); strings.TrimSpace(got) != "lo" {
					t.Fatalf("--network none: ip link %q", got)
				}
				hostIfs, _ := os.ReadDir("/sys/class/net")
				if got := runOK(t, store, rt, append(d, img, "ls", "/sys/class/net")...); len(strings.Fields(got)) != len(hostIfs) {
					t.Fatalf("host network: interfaces %q, the host has %d", got, len(hostIfs))
				}

				out := runOK(t, store, rt, append(d, "-v", host+":/ro:ro", "--mount", "type=bind,src="+host+",dst=/rw", "--tmpfs", "/scratch", img,
					"sh", "-c", "cat /ro/in; echo x > /ro/no 2>/dev/null || echo read-only; echo written > /rw/out; echo t > /scratch/t && cat /scratch/t")...)
				if want := "from the host\nread-only\nt\n"; out != want {
					t.Fatalf("mounts: %q, want %q", out, want)
				}
				if b, err := os.ReadFile(filepath.Join(host, "out")); err != nil || string(b) != "written\n" {
					t.Fatalf("the writable bind mount: %q %v", b, err)
				}
				os.Remove(filepath.Join(host, "out"))
				if left := runState(t, store, rt); left != "" {
					t.Fatalf("runs left:\n%s", left)
				}
			})
		}
	}
}

// TestRunMinbase runs a Debian minbase image (the debootstrap tree the
// other tests use) with both runtimes: its shell, its tools and its
// users.
func TestRunMinbase(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := minbaseImage(t, dir)
	store := filepath.Join(dir, "store")
	for _, rt := range runtimesUnderTest(t) {
		got := runOK(t, store, rt, "-u", "nobody", "-w", "/tmp", img, "bash", "-c", `echo "$(id -un) $(pwd) $(cat /etc/debian_version | cut -d. -f1) $HOME"; exit 0`)
		if want := "nobody /tmp 12 /nonexistent\n"; got != want {
			t.Errorf("%s: %q, want %q", rt, got, want)
		}
		if r := runIn(t, store, rt, img, "bash", "-c", "exit 7"); r.Code != 7 {
			t.Errorf("%s: exit %d, want 7: %s", rt, r.Code, r.Stderr)
		}
		if left := runState(t, store, rt); left != "" {
			t.Fatalf("runs left:\n%s", left)
		}
	}
}

// TestRunBundles runs bundles rather than images: a kept bundle (--name)
// keeps what its command changed and is run again by its directory, a
// second --name of it is refused unless --replace, and a bundle strata
// unpack made runs without its config.json changing, nor its rootfs
// gaining the runtime's mount points.
func TestRunBundles(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh")
	for _, rt := range runtimesUnderTest(t) {
		t.Run(filepath.Base(rt), func(t *testing.T) {
			store := filepath.Join(dir, "store-"+filepath.Base(rt))
			kept := filepath.Join(store, "bundles", "keep")
			ovlUnmountCleanup(t, kept)
			r := runCmd(t, nil, strataBin, "--root", store, "run", "--runtime", rt, "--name", "keep", img, "sh", "-c", "echo kept > /made")
			if r.Code != 0 || !strings.Contains(r.Stderr, kept) {
				t.Fatalf("--name: exit %d, stderr %q (want it to name %s)", r.Code, r.Stderr, kept)
			}
			if got := runOK(t, store, rt, kept, "cat", "/made"); got != "kept\n" {
				t.Fatalf("the kept bundle: %q", got)
			}
			if r := runIn(t, store, rt, "--name", "keep", img, "sh", "-c", "true"); r.Code != 125 || !strings.Contains(r.Stderr, "exists") {
				t.Fatalf("a second --name keep: exit %d: %s", r.Code, r.Stderr)
			}
			runOK(t, store, rt, "--name", "keep", "--replace", img, "sh", "-c", "true")
			if r := runIn(t, store, rt, kept, "cat", "/made"); r.Code == 0 {
				t.Fatalf("--replace kept the old bundle's file: %q", r.Stdout)
			}

			b := filepath.Join(dir, "bundle-"+filepath.Base(rt))
			strata(t, "--root", store, "unpack", img, b)
			spec, _ := os.ReadFile(filepath.Join(b, "config.json"))
			before := treeState(t, filepath.Join(b, "rootfs"))
			// The bundle's own command, with its rlimits (which these
			// machines refuse) left in its config.json.
			if got := runOK(t, store, rt, b, "sh", "-c", "echo $GREETING; pwd"); got != "hello from the image\n/home\n" {
				t.Fatalf("bundle: %q", got)
			}
			if after, _ := os.ReadFile(filepath.Join(b, "config.json")); !bytes.Equal(spec, after) {
				t.Error("the bundle's config.json changed")
			}
			if after := treeState(t, filepath.Join(b, "rootfs")); strings.Join(before, "\n") != strings.Join(after, "\n") {
				t.Errorf("the run changed the rootfs:\n%s", diffLines(before, after))
			}
			if left := runState(t, store, rt); left != "" {
				t.Fatalf("runs left:\n%s", left)
			}
		})
	}
}

// startRun starts strata run (through runuser as user, when not empty)
// in a process group of its own, as a shell starts a foreground job, with
// a command that prints "started" and then sleeps; it returns once the
// container printed it.
func startRun(t *testing.T, user, store, rt, img string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	args := []string{"--quiet", "--root", store, "run", "--runtime", rt, img, "sh", "-c", "echo started; exec busybox sleep 100"}
	name := strataBin
	if user != "" {
		args = append([]string{"-u", user, "--", strataBin}, args...)
		name = "runuser"
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = filepath.Dir(store)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// A file, not a pipe, that Wait would wait on as long as a killed
	// strata's container lives.
	errf, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer errf.Close()
	cmd.Stderr = errf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr := func() string { b, _ := os.ReadFile(errf.Name()); return string(b) }
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	rd := bufio.NewReader(out)
	line := make(chan string, 1)
	go func() {
		l, _ := rd.ReadString('\n')
		line <- l
	}()
	select {
	case l := <-line:
		if l != "started\n" {
			_ = cmd.Wait()
			t.Fatalf("the container printed %q: %s", l, stderr())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the container did not start in 60s: %s", stderr())
	}
	return cmd, rd
}

// waitExit waits for cmd and returns its exit status, failing the test
// when that takes longer than limit.
func waitExit(t *testing.T, cmd *exec.Cmd, limit time.Duration) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		} else if err != nil {
			t.Fatal(err)
		}
		return code, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("strata run still runs %v after the signal", limit)
	}
	return 0, 0
}

// TestRunSignals interrupts runs as a terminal's Ctrl-C does (SIGINT to
// the foreground process group) and kills strata mid-run: a sleep, which
// as the container's PID 1 would ignore SIGINT, ends at once with
// status 130 and leaves no state; after a SIGKILL of strata, the next
// run deletes the container it left and works.
func TestRunSignals(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh")
	for _, rt := range runtimesUnderTest(t) {
		t.Run(filepath.Base(rt), func(t *testing.T) {
			store := filepath.Join(dir, "store-"+filepath.Base(rt))
			checkSignals(t, "", store, rt, img)
		})
	}
}

// checkSignals is TestRunSignals as user ("" for root).
func checkSignals(t *testing.T, user, store, rt, img string) {
	t.Helper()
	cmd, _ := startRun(t, user, store, rt, img)
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, took := waitExit(t, cmd, 10*time.Second)
	if code != 130 {
		t.Fatalf("Ctrl-C: exit %d, want 130", code)
	}
	if took > 5*time.Second {
		t.Errorf("Ctrl-C took %v to end the run", took)
	}
	if left := runState(t, store, rt); left != "" {
		t.Fatalf("an interrupted run left:\n%s", left)
	}

	// A SIGKILL of strata: its container, run directory and bundle stay
	// until the next run.
	cmd, _ = startRun(t, user, store, rt, img)
	victim := cmd.Process.Pid
	if user != "" {
		// runuser's child: strata itself.
		victim = childOf(t, cmd.Process.Pid)
	}
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, 10*time.Second)
	if left := runState(t, store, rt); left == "" {
		t.Fatal("a killed run left nothing: the test killed it too late")
	}
	var r result
	if user != "" {
		r = rlRunIn(t, filepath.Dir(store), "runuser", "-u", user, "--", strataBin, "--quiet", "--root", store, "run", "--runtime", rt, img, "echo", "again")
	} else {
		r = runIn(t, store, rt, img, "echo", "again")
	}
	if r.Code != 0 || r.Stdout != "again\n" {
		t.Fatalf("the run after a killed one: exit %d, %q: %s", r.Code, r.Stdout, r.Stderr)
	}
	if left := runState(t, store, rt); left != "" {
		t.Fatalf("the run after a killed one left:\n%s", left)
	}
}

// childOf is the one child process of pid.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscan(string(b), &child); err != nil {
		t.Fatalf("children of %d: %q", pid, b)
	}
	return child
}

// TestRunRootless runs containers as the unprivileged test user, in
// strata's user namespace: the image's users keep their IDs (the user's
// subordinate range), -e/-w/-u, --network none, bind mounts, Ctrl-C and
// a killed run; crun with overlay, runc with vfs.
func TestRunRootless(t *testing.T) {
	uid, gid := rootlessAccount(t)
	dir := rootlessDir(t, uid, gid)
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh", "-c", `echo "$GREETING in $(pwd) as $(id -u)"`)
	host := filepath.Join(dir, "host")
	if err := os.MkdirAll(host, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rlChownTree(t, dir, uid, gid)
	// Each runtime with one driver: the drivers differ in the rootfs
	// alone, which TestRunImage covers with both.
	rts := runtimesUnderTest(t)
	for i, driver := range []string{"overlay", "vfs"} {
		rt := rts[i%len(rts)]
		t.Run(filepath.Base(rt)+"/"+driver, func(t *testing.T) {
			store := filepath.Join(dir, "store-"+filepath.Base(rt)+"-"+driver)
			as := func(args ...string) result {
				t.Helper()
				full := append([]string{"-u", rootlessUser, "--", strataBin, "--quiet", "--root", store, "run", "--runtime", rt, "--driver", driver}, args...)
				return rlRunIn(t, dir, "runuser", full...)
			}
			ok := func(args ...string) string {
				t.Helper()
				r := as(args...)
				if r.Code != 0 {
					t.Fatalf("strata run %s as %s: exit %d\n%s", strings.Join(args, " "), rootlessUser, r.Code, r.Stderr)
				}
				return r.Stdout
			}
			if got, want := ok(img), "hello from the image in /home as 0\n"; got != want {
				t.Fatalf("image command printed %q, want %q", got, want)
			}
			if r := as(img, "sh", "-c", "exit 7"); r.Code != 7 {
				t.Fatalf("exit 7: exit %d: %s", r.Code, r.Stderr)
			}
			got := ok("-e", "A=1", "-w", "/tmp/made", "-u", "alice", img, "sh", "-c", `echo "$(id -u):$(id -g) $(pwd) $A"; stat -c %u:%g /home/alice/notes; cat /home/alice/notes`)
			if want := "1000:1000 /tmp/made 1\n1000:1000\nhello alice\n"; got != want {
				t.Fatalf("as alice: %q, want %q", got, want)
			}
			if got := ok("--network", "none", img, "ls", "/sys/class/net"); got != "lo\n" {
				t.Fatalf("--network none: %q", got)
			}
			out := ok("-v", host+":/ro:ro", "--mount", "type=bind,source="+host+",target=/rw", img,
				"sh", "-c", "cat /ro/in; echo x > /ro/no 2>/dev/null || echo read-only; echo written > /rw/out")
			if want := "from the host\nread-only\n"; out != want {
				t.Fatalf("mounts: %q, want %q", out, want)
			}
			if fi, err := os.Stat(filepath.Join(host, "out")); err != nil || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
				t.Fatalf("the file written through the bind mount: %v (want it the user's)", err)
			}
			os.Remove(filepath.Join(host, "out"))
			if left := runState(t, store, rt); left != "" {
				t.Fatalf("runs left:\n%s", left)
			}
			checkSignals(t, rootlessUser, store, rt, img)
		})
	}
}

// TestRunMatchesDocker runs the same commands on the same image with
// strata run and docker run (Docker 20.10): the user, groups, working
// directory, environment and host files the command sees are the same.
func TestRunMatchesDocker(t *testing.T) {
	e := startDockerd(t)
	dir := t.TempDir()
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh")
	archive := filepath.Join(dir, "img.tar")
	strata(t, "save", "-o", archive, "--name", "strata-run-test:v1", img)
	e.must(t, "load", "-i", archive)
	store := filepath.Join(dir, "store")
	cmds := [][]string{
		{"sh", "-c", "id; pwd; env; cat /etc/hostname; grep -c localhost /etc/hosts; ls /sys/class/net"},
		{"-u", "alice", "sh", "-c", "id; echo $HOME"},
		{"-u", "alice:wheel", "sh", "-c", "id; echo $HOME"},
		{"-u", "1234", "sh", "-c", "id; echo $HOME"},
		{"-w", "/tmp/new", "-e", "A=1", "-e", "GREETING=x", "sh", "-c", "pwd; env"},
	}
	for _, c := range cmds {
		var flags []string
		i := 0
		for ; i < len(c) && strings.HasPrefix(c[i], "-"); i += 2 {
			flags = append(flags, c[i], c[i+1])
		}
		common := append([]string{"--hostname", "twin", "--network", "none"}, flags...)
		want := e.must(t, append(append(append([]string{"run", "--rm"}, common...), "strata-run-test:v1"), c[i:]...)...)
		for _, rt := range runtimesUnderTest(t) {
			got := runOK(t, store, rt, append(append(common, img), c[i:]...)...)
			if got != want {
				t.Errorf("%s %v: strata run printed\n%s\ndocker run printed\n%s", filepath.Base(rt), c, got, want)
			}
		}
	}
}

// TestRunCLIErrors: what strata run refuses, and how.
func TestRunCLIErrors(t *testing.T) {
	dir := t.TempDir()
	img := runImageIn(t, filepath.Join(dir, "img"), "/bin/sh")
	b := filepath.Join(dir, "bundle")
	if err := os.MkdirAll(b, 0o755); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "root": map[string]any{"path": "rootfs"}, "process": map[string]any{"args": []string{"true"}}})
	if err := os.WriteFile(filepath.Join(b, "config.json"), spec, 0o644); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--network", "bridge", img}, 2, "--network"},
		{[]string{"-w", "relative", img}, 2, "absolute"},
		{[]string{"-v", "volname:/data", img}, 2, "named volumes"},
		{[]string{"--mount", "type=volume,dst=/x", img}, 2, "type"},
		{[]string{"--mount", "type=bind,dst=/x", img}, 2, "source"},
		{[]string{"--mount", "type=bind,src=/,dst=/x,bogus=1", img}, 2, "bogus"},
		{[]string{"-e", "=x", img}, 2, "--env"},
		{[]string{"--env-file", filepath.Join(dir, "missing.env"), img}, 2, "missing.env"},
		{[]string{"--name", "bad/name", img}, 2, "--name"},
		{[]string{"--replace", img}, 2, "--replace"},
		{[]string{"--name", "x", b}, 2, "bundle directory"},
		{[]string{"--runtime", "/no/such/runtime", img}, 125, "runtime"},
		{[]string{"-v", filepath.Join(dir, "nowhere") + ":/x", img, "true"}, 125, "nowhere"},
		{[]string{filepath.Join(dir, "nolayout") + ":v1"}, 125, "nolayout"},
	} {
		r := runCmd(t, nil, strataBin, append([]string{"--quiet", "--root", store, "run"}, tc.args...)...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.msg) || strings.Count(strings.TrimSpace(r.Stderr), "\n") != 0 {
			t.Errorf("strata run %v: exit %d, stderr %q; want exit %d and one line naming %q", tc.args, r.Code, r.Stderr, tc.code, tc.msg)
		}
	}
}
