package run_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/run"
)

// busyboxBundle unpacks a busybox image (busybox-static) into a new
// bundle and returns its directory and the store's root.
func busyboxBundle(t *testing.T, driver string) (dir, store string) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireFile(t, "/bin/busybox", "busybox-static")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	img := filepath.Join(tmp, "img")
	if err := layertest.BuildImage(img, "v1", layertest.Image{
		Layers: [][]byte{layertest.Tar(
			layertest.Dir("bin", 0o755), layertest.File("bin/busybox", string(bb), 0o755),
			layertest.Symlink("bin/sh", "busybox"),
			layertest.Dir("etc", 0o755),
			layertest.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644),
			layertest.File("etc/group", "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n", 0o644),
			layertest.File("etc/motd", "hello\n", 0o644),
		)},
		Env: []string{"GREETING=hi"},
		Cmd: []string{"/bin/sh", "-c", "echo $GREETING"},
	}); err != nil {
		t.Fatal(err)
	}
	l, err := layout.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	store = filepath.Join(tmp, "store")
	s, err := snapshot.Open(store, snapshot.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir = filepath.Join(tmp, "bundle")
	if _, err := bundle.Unpack(context.Background(), s, l, "v1", dir, bundle.UnpackOptions{Driver: driver}); err != nil {
		t.Fatal(err)
	}
	return dir, store
}

func runtimes(t *testing.T) []string {
	return []string{testenv.RequireTool(t, "crun"), testenv.RequireTool(t, "runc")}
}

func TestRunEcho(t *testing.T) {
	dir, store := busyboxBundle(t, "vfs")
	before, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	for _, rt := range runtimes(t) {
		t.Run(filepath.Base(rt), func(t *testing.T) {
			var out, errb bytes.Buffer
			o := run.Options{Runtime: rt, StateDir: filepath.Join(store, "run"), Stdout: &out, Stderr: &errb}
			code, err := run.Run(context.Background(), dir, o)
			if err != nil || code != 0 || out.String() != "hi\n" {
				t.Fatalf("run: %d %v, printed %q, stderr %q", code, err, out.String(), errb.String())
			}
			out.Reset()
			o.Args = []string{"sh", "-c", "exit 7"}
			if code, err := run.Run(context.Background(), dir, o); err != nil || code != 7 {
				t.Fatalf("exit 7: %d %v %s", code, err, errb.String())
			}
			o.Args = []string{"nosuch"}
			if _, err := run.Run(context.Background(), dir, o); !errors.Is(err, run.ErrCommandNotFound) {
				t.Fatalf("missing command: %v", err)
			}
			o.Args = []string{"/etc/motd"}
			if _, err := run.Run(context.Background(), dir, o); !errors.Is(err, run.ErrNotExecutable) {
				t.Fatalf("not executable: %v", err)
			}
			o.Args = []string{"sh", "-c", "id -u; id -g; pwd; echo $A $GREETING; hostname"}
			o.Env = []string{"A=1", "GREETING=hey"}
			o.User = "alice"
			o.Cwd = "/tmp/work"
			o.Hostname = "box"
			out.Reset()
			if code, err := run.Run(context.Background(), dir, o); err != nil || code != 0 {
				t.Fatalf("run: %d %v %s", code, err, errb.String())
			}
			if want := "1000\n1000\n/tmp/work\n1 hey\nbox\n"; out.String() != want {
				t.Fatalf("printed %q, want %q", out.String(), want)
			}
		})
	}
	after, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	if !bytes.Equal(before, after) {
		t.Error("the bundle's config.json changed")
	}
	for _, name := range []string{"proc", "sys", "dev"} {
		if _, err := os.Lstat(filepath.Join(dir, "rootfs", name)); err == nil {
			t.Errorf("the runtime's mount point /%s stayed in the rootfs", name)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(store, "run", "containers"))
	if len(ents) != 0 {
		t.Errorf("%d run directories left", len(ents))
	}
	_ = strings.TrimSpace
}
