package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// TestRootlessRuncRun runs `runc run` on bundles an unprivileged user
// unpacked, as that user: a vfs bundle with plain rootless runc (the
// spec maps the user to root), and an overlay bundle through
// `strata mount DIR -- runc ...`, since a rootless overlay mount lives in
// strata's namespace (as buildah's does in `buildah unshare`).
func TestRootlessRuncRun(t *testing.T) {
	needTool(t, "runc")
	uid, gid := rootlessAccount(t)
	dir := rootlessDir(t, uid, gid)
	img := standardImageIn(t, filepath.Join(dir, "layout"), "/bin/sh", "-c", `echo "$GREETING in $(pwd) as $(id -u)"; cat /etc/motd`)
	rlChownTree(t, img, uid, gid)
	want := "hello from the image in /home as 0\nlayer two\n"

	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) {
			b := filepath.Join(dir, "bundle-"+driver)
			if driver == "overlay" {
				ovlUnmountCleanup(t, b)
			}
			r := rlAsUser(t, dir, "unpack", "--root", filepath.Join(dir, "store-"+driver), "--driver", driver, img+":v1", b)
			if r.Code != 0 {
				t.Fatalf("rootless unpack: exit %d: %s", r.Code, r.Stderr)
			}
			if strings.Contains(r.Stderr, "falling back") {
				t.Fatalf("fell back: %s", r.Stderr)
			}
			stripRlimits(t, b) // keeps the file, and its owner
			id := fmt.Sprintf("strata-rl-%s-%d", driver, os.Getpid())
			runcRoot := filepath.Join(dir, "runc-"+driver)
			runc := []string{"runc", "--root", runcRoot, "run", "-b", b, id}
			var out result
			if driver == "vfs" {
				out = rlRunIn(t, dir, "runuser", append([]string{"-u", rootlessUser, "--"}, runc...)...)
			} else {
				out = rlAsUser(t, dir, append([]string{"mount", b, "--"}, runc...)...)
			}
			if out.Code != 0 || out.Stdout != want {
				t.Fatalf("runc run as %s: exit %d, printed %q, want %q\n%s", rootlessUser, out.Code, out.Stdout, want, out.Stderr)
			}
		})
	}

	// In strata's namespace (the user's subordinate range mapped) the
	// image's own user is kept.
	t.Run("overlay image user", func(t *testing.T) {
		bb, err := os.ReadFile("/bin/busybox")
		if err != nil {
			t.Fatalf("busybox-static is required by this test: %v", err)
		}
		img := filepath.Join(dir, "layout-user")
		if err := layertest.BuildImage(img, "v1", layertest.Image{
			Layers: layertest.Standard(bb), User: "1000:1000",
			Cmd: []string{"/bin/sh", "-c", "id -u; id -g; cat /etc/motd"},
		}); err != nil {
			t.Fatal(err)
		}
		rlChownTree(t, img, uid, gid)
		b := filepath.Join(dir, "bundle-user")
		ovlUnmountCleanup(t, b)
		if r := rlAsUser(t, dir, "unpack", "--root", filepath.Join(dir, "store-overlay"), "--driver", "overlay", img+":v1", b); r.Code != 0 {
			t.Fatalf("rootless unpack: exit %d: %s", r.Code, r.Stderr)
		}
		stripRlimits(t, b) // keeps the file, and its owner
		id := fmt.Sprintf("strata-rl-user-%d", os.Getpid())
		out := rlAsUser(t, dir, "mount", b, "--", "runc", "--root", filepath.Join(dir, "runc-user"), "run", "-b", b, id)
		if want := "1000\n1000\nlayer two\n"; out.Code != 0 || out.Stdout != want {
			t.Fatalf("runc run: exit %d, printed %q, want %q\n%s", out.Code, out.Stdout, want, out.Stderr)
		}
	})
}
