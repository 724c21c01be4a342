package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/spec"
	"golang.org/x/sys/unix"
)

// fakeRuntime writes a shell script that acts as an OCI runtime: it logs
// its arguments to dir/calls, and "run" does what $FAKE_RUNTIME says:
// "fail" logs an error and exits 1 with no pid file, "exitN" writes the
// pid file and exits N, "sleep" writes it and sleeps.
func fakeRuntime(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "fakert")
	script := `#!/bin/sh
echo "$@" >> ` + filepath.Join(dir, "calls") + `
log=; pid=; cmd=
while [ $# -gt 0 ]; do
	case "$1" in
	--log) log=$2; shift;;
	--pid-file) pid=$2; shift;;
	--root|--log-format|--bundle) shift;;
	run|delete) cmd=$1;;
	esac
	shift
done
[ "$cmd" = run ] || exit 0
case "$FAKE_RUNTIME" in
fail) echo '{"level":"error","msg":"no such thing","time":"now"}' >> "$log"; exit 1;;
exit*) echo $$ > "$pid"; exit "${FAKE_RUNTIME#exit}";;
sleep) echo $$ > "$pid"; exec sleep 30;;
esac
`
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeBundle writes a bundle whose rootfs holds an executable /bin/sh
// and a plain /etc/motd, with spec.Generate's config.json.
func fakeBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "usr"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(rootfs, "bin/sh"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/motd"), []byte("hi\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nbob:x:1000:\nstaff:x:50:bob\n"), 0o644)
	os.Symlink("../bin", filepath.Join(rootfs, "usr/bin"))
	s, err := spec.Generate(&ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"A=image"}}}, rootfs, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunWithFakeRuntime(t *testing.T) {
	tmp := t.TempDir()
	rt := fakeRuntime(t, tmp)
	b := fakeBundle(t)
	state := filepath.Join(tmp, "state")
	o := Options{Runtime: rt, StateDir: state}
	ctx := context.Background()

	t.Setenv("FAKE_RUNTIME", "exit3")
	if code, err := Run(ctx, b, o); err != nil || code != 3 {
		t.Fatalf("exit3: %d %v", code, err)
	}
	t.Setenv("FAKE_RUNTIME", "exit0")
	if code, err := Run(ctx, b, o); err != nil || code != 0 {
		t.Fatalf("exit0: %d %v", code, err)
	}
	t.Setenv("FAKE_RUNTIME", "fail")
	_, err := Run(ctx, b, o)
	var re *RuntimeError
	if !errors.As(err, &re) || re.Status != 1 || re.Message != "no such thing" {
		t.Fatalf("a runtime failing before the container: %v", err)
	}

	for _, tc := range []struct {
		o    Options
		want error
	}{
		{Options{Args: []string{"nosuch"}}, ErrCommandNotFound},
		{Options{Args: []string{"/etc/motd"}}, ErrNotExecutable},
		{Options{Args: []string{"/etc"}}, ErrCommandNotFound},
		{Options{Args: []string{"../bin/sh"}, Cwd: "/etc"}, nil},
		{Options{Args: []string{"sh"}, Env: []string{"PATH=/usr/bin"}}, nil},
		{Options{Args: []string{"sh"}, Env: []string{"PATH=/nowhere"}}, ErrCommandNotFound},
		{Options{Network: "bridge"}, ErrBadOptions},
		{Options{Cwd: "relative"}, ErrBadOptions},
		{Options{Env: []string{"NOEQUALS"}}, ErrBadOptions},
		{Options{Mounts: []Mount{{Source: "/nonexistent-source", Destination: "/x"}}}, ErrBadOptions},
		{Options{Mounts: []Mount{{Source: "relative", Destination: "/x"}}}, ErrBadOptions},
		{Options{Mounts: []Mount{{Source: tmp, Destination: "x"}}}, ErrBadOptions},
		{Options{Mounts: []Mount{{Type: "volume", Destination: "/x"}}}, ErrBadOptions},
		{Options{User: "nobody"}, spec.ErrUnknownUser},
	} {
		tc.o.Runtime, tc.o.StateDir = rt, state
		t.Setenv("FAKE_RUNTIME", "exit0")
		if _, err := Run(ctx, b, tc.o); !errors.Is(err, tc.want) {
			t.Errorf("%+v: %v, want %v", tc.o, err, tc.want)
		}
	}
	if _, err := Run(ctx, b, Options{Runtime: filepath.Join(tmp, "missing")}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("no state dir: %v", err)
	}
	if _, err := Run(ctx, b, Options{Runtime: filepath.Join(tmp, "missing"), StateDir: state}); !errors.Is(err, ErrNoRuntime) {
		t.Errorf("missing runtime: %v", err)
	}

	// A cancelled run kills the container's process and says so.
	t.Setenv("FAKE_RUNTIME", "sleep")
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Run(cctx, b, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("cancel took %v", time.Since(start))
	}
	ents, _ := os.ReadDir(filepath.Join(state, containersDir))
	if len(ents) != 0 {
		t.Errorf("%d run directories left", len(ents))
	}
}

// TestSweep: the run directories of dead runs are swept with their
// containers, a live one is left alone, and a container the runtime
// keeps with no run directory is deleted.
func TestSweep(t *testing.T) {
	tmp := t.TempDir()
	rt := fakeRuntime(t, tmp)
	state := filepath.Join(tmp, "state")
	root := filepath.Join(state, runtimesDir, filepath.Base(rt))
	mk := func(id string) string {
		d := filepath.Join(state, containersDir, id)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Join(root, id), 0o700)
		b, _ := json.Marshal(info{Runtime: rt, Root: root, ID: id})
		os.WriteFile(filepath.Join(d, infoFile), b, 0o600)
		return d
	}
	dead := mk("strata-1")
	live := mk("strata-2")
	f, err := os.Open(live)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "strata-3"), 0o700)
	c, err := newContainer(state, rt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.remove()
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("the dead run's directory stayed: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("the live run's directory went: %v", err)
	}
	calls, _ := os.ReadFile(filepath.Join(tmp, "calls"))
	for _, want := range []string{"delete --force strata-1", "delete --force strata-3"} {
		if !strings.Contains(string(calls), want) {
			t.Errorf("runtime calls lack %q:\n%s", want, calls)
		}
	}
	if strings.Contains(string(calls), "strata-2") {
		t.Errorf("the live run's container was deleted:\n%s", calls)
	}
}

func baseSpec(t *testing.T, rootfs string) *specs.Spec {
	t.Helper()
	s, err := spec.Generate(&ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin", "A=image"}, User: "bob"}}, rootfs, spec.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hasNS(s *specs.Spec, typ specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == typ {
			return true
		}
	}
	return false
}

func TestRunSpecForms(t *testing.T) {
	b := fakeBundle(t)
	rootfs := filepath.Join(b, "rootfs")
	ns := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}, {ContainerID: 1, HostID: 100000, Size: 65536}}}
	single := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 1001, Size: 1}}}
	for _, tc := range []struct {
		name            string
		store           snapshot.StoreOptions
		network         string
		userNS, netNS   bool
		uid             uint32
		sysfs, cgroupFS bool
	}{
		{"root", snapshot.StoreOptions{}, "", false, false, 1000, true, true},
		{"root none", snapshot.StoreOptions{}, NetworkNone, false, true, 1000, true, true},
		{"namespace", snapshot.StoreOptions{Rootless: true, UserNS: ns}, "", false, false, 1000, false, false},
		{"namespace none", snapshot.StoreOptions{Rootless: true, UserNS: ns}, NetworkNone, false, true, 1000, true, false},
		{"namespace single", snapshot.StoreOptions{Rootless: true, UserNS: single}, "", false, false, 0, false, false},
		{"rootless", snapshot.StoreOptions{Rootless: true, UID: 1001, GID: 1001}, "", true, false, 0, false, false},
		{"rootless none", snapshot.StoreOptions{Rootless: true, UID: 1001, GID: 1001}, NetworkNone, true, true, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Store: tc.store, Network: tc.network, Hostname: "h", Env: []string{"B=1", "A=run"},
				Mounts: []Mount{{Type: MountTmpfs, Destination: "/scratch/"}, {Source: b, Destination: "/src", ReadOnly: true}}}
			s, err := runSpec(baseSpec(t, rootfs), b, o, []specs.Mount{{Destination: "/etc/hosts", Type: "bind", Source: "/x"}})
			if err != nil {
				t.Fatal(err)
			}
			if hasNS(s, specs.UserNamespace) != tc.userNS || hasNS(s, specs.NetworkNamespace) != tc.netNS {
				t.Errorf("namespaces %+v", s.Linux.Namespaces)
			}
			if s.Process.User.UID != tc.uid {
				t.Errorf("user %+v, want uid %d", s.Process.User, tc.uid)
			}
			if s.Process.Rlimits != nil || s.Version != spec.Version || s.Root.Path != rootfs || s.Hostname != "h" {
				t.Errorf("rlimits %v, version %s, root %s, hostname %s", s.Process.Rlimits, s.Version, s.Root.Path, s.Hostname)
			}
			var sysfs, cgroup bool
			var last []string
			for _, m := range s.Mounts {
				if m.Destination == "/sys" {
					sysfs = m.Type == "sysfs"
				}
				if m.Type == "cgroup" {
					cgroup = true
				}
				last = append(last, m.Destination)
			}
			if sysfs != tc.sysfs || cgroup != tc.cgroupFS {
				t.Errorf("sysfs %v cgroup %v, want %v %v", sysfs, cgroup, tc.sysfs, tc.cgroupFS)
			}
			if got := strings.Join(last[len(last)-3:], " "); got != "/etc/hosts /scratch /src" {
				t.Errorf("last mounts %s", got)
			}
			wantHome := "HOME=/home/bob"
			if tc.uid == 0 {
				wantHome = "HOME=/root"
			}
			if got, want := strings.Join(s.Process.Env, " "), "PATH=/bin HOSTNAME=h A=run B=1 "+wantHome; got != want {
				t.Errorf("env %q, want %q", got, want)
			}
		})
	}
}

func TestRunEnv(t *testing.T) {
	for _, tc := range []struct {
		base, env []string
		terminal  bool
		want      string
	}{
		{nil, nil, false, "PATH=" + spec.DefaultPath + " HOSTNAME=h"},
		{[]string{"A=1", "PATH=/x"}, []string{"A=2", "C=3"}, true, "PATH=/x HOSTNAME=h TERM=xterm A=2 C=3"},
		{[]string{"HOSTNAME=img", "TERM=vt100"}, []string{"HOSTNAME=run"}, true, "PATH=" + spec.DefaultPath + " HOSTNAME=run TERM=vt100"},
		{nil, []string{"E="}, false, "PATH=" + spec.DefaultPath + " HOSTNAME=h E="},
	} {
		got, err := runEnv(tc.base, tc.env, "h", tc.terminal)
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("runEnv(%v, %v) = %v %v, want %s", tc.base, tc.env, got, err, tc.want)
		}
	}
}

// TestStubs: what a runtime creates in the rootfs to mount on is removed
// after the run when still empty, with its parent's times put back; what
// was there, and what the container filled, stays.
func TestStubs(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.MkdirAll(filepath.Join(rootfs, "dev"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/hostname"), []byte("img\n"), 0o644)
	os.Symlink("etc", filepath.Join(rootfs, "link"))
	old := time.Unix(1_000_000_000, 0)
	for _, d := range []string{"", "etc"} {
		os.Chtimes(filepath.Join(rootfs, d), old, old)
	}
	s := &specs.Spec{Root: &specs.Root{Path: rootfs}, Mounts: []specs.Mount{
		{Destination: "/proc"}, {Destination: "/dev"}, {Destination: "/dev/pts"},
		{Destination: "/etc/hostname"}, {Destination: "/etc/hosts"},
		{Destination: "/run/secrets/token"}, {Destination: "/cache"}, {Destination: "/link/resolv.conf"},
	}}
	st, err := findStubs(s)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, sb := range st.list {
		names = append(names, sb.name)
	}
	if got := strings.Join(names, " "); got != "proc dev/pts etc/hosts run run/secrets run/secrets/token cache link/resolv.conf" {
		t.Fatalf("stubs %s", got)
	}
	// What a runtime does; and a container that writes into /cache.
	for _, d := range []string{"proc", "dev/pts", "run/secrets", "cache"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	for _, f := range []string{"etc/hosts", "run/secrets/token", "etc/resolv.conf"} {
		os.WriteFile(filepath.Join(rootfs, f), nil, 0o644)
	}
	os.WriteFile(filepath.Join(rootfs, "cache/kept"), []byte("x"), 0o644)
	st.clean()
	for p, want := range map[string]bool{
		"proc": false, "dev": true, "dev/pts": false, "etc/hosts": false, "etc/hostname": true,
		"run": false, "cache/kept": true, "etc/resolv.conf": false,
	} {
		_, err := os.Lstat(filepath.Join(rootfs, p))
		if (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	for _, d := range []string{"", "etc"} {
		fi, _ := os.Stat(filepath.Join(rootfs, d))
		if !fi.ModTime().Equal(old) {
			t.Errorf("/%s mtime %v, want %v", d, fi.ModTime(), old)
		}
	}
}

func TestDisposed(t *testing.T) {
	cmd := exec.Command("sh", "-c", `trap "" INT; trap "exit 0" TERM; echo ready; while :; do sleep 1; done`)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; i < 100 && out.Len() == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	for sig, want := range map[unix.Signal]bool{unix.SIGINT: true, unix.SIGTERM: true, unix.SIGUSR2: false} {
		if got := disposed(pid, sig); got != want {
			t.Errorf("disposed(%v) = %v, want %v", sig, got, want)
		}
	}
	if !disposed(1<<22+12345, unix.SIGINT) {
		t.Error("a process that is gone counts as handling: nothing to escalate")
	}
}

func TestLookRuntime(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir)
	if _, err := LookRuntime(""); !errors.Is(err, ErrNoRuntime) {
		t.Fatalf("no runtime: %v", err)
	}
	runc := filepath.Join(dir, "runc")
	os.WriteFile(runc, []byte("#!/bin/sh\n"), 0o755)
	if p, err := LookRuntime(""); err != nil || p != runc {
		t.Fatalf("runc: %s %v", p, err)
	}
	crun := filepath.Join(dir, "crun")
	os.WriteFile(crun, []byte("#!/bin/sh\n"), 0o755)
	if p, err := LookRuntime(""); err != nil || p != crun {
		t.Fatalf("crun first: %s %v", p, err)
	}
	if p, err := LookRuntime("runc"); err != nil || p != runc {
		t.Fatalf("by name: %s %v", p, err)
	}
	if _, err := LookRuntime(filepath.Join(dir, "youki")); !errors.Is(err, ErrNoRuntime) {
		t.Fatalf("a missing path: %v", err)
	}
}
