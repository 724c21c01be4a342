package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// ownersImage writes a layout into dir/img, owned by uid:gid, with two
// images of a Debian minbase tree (/etc/shadow 0:42, /var/mail 0:8) and a
// layer holding /home/app owned by 1000:1000 and /srv/far owned by
// 70000:70000, beyond the 65536 subordinate IDs the test user has: "v1"
// runs as root, "app" as USER 1000:1000.
func ownersImage(t *testing.T, dir string, uid, gid int) string {
	t.Helper()
	src := minbaseTar(t)
	img := filepath.Join(dir, "img")
	strata(t, "import", "--created", "2024-01-02T03:04:05Z", src, img+":base")
	l, err := layout.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base, err := l.Image("base", nil)
	if err != nil {
		t.Fatal(err)
	}
	app := lt.Tar(
		lt.Dir("home", 0o755),
		lt.Owned(lt.Dir("home/app", 0o755), 1000, 1000),
		lt.Owned(lt.File("home/app/.profile", "# app\n", 0o644), 1000, 1000),
		lt.Dir("srv", 0o755),
		lt.Owned(lt.File("srv/far", "far\n", 0o644), 70000, 70000),
	)
	top, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, lt.Gzip(app))
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []struct{ name, user string }{{"v1", ""}, {"app", "1000:1000"}} {
		cfg, err := layout.ParseConfig(base.ConfigRaw)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.AppendLayer(lt.DiffID(app)); err != nil {
			t.Fatal(err)
		}
		if err := cfg.AppendHistory(ocispec.History{CreatedBy: "owners layer"}); err != nil {
			t.Fatal(err)
		}
		if err := cfg.SetRuntime("Cmd", []string{"/bin/sh"}); err != nil {
			t.Fatal(err)
		}
		if tag.user != "" {
			if err := cfg.SetRuntime("User", tag.user); err != nil {
				t.Fatal(err)
			}
		}
		desc, err := l.PutImage(cfg, append(append([]ocispec.Descriptor{}, base.Manifest.Layers...), top), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Tag(desc, tag.name); err != nil {
			t.Fatal(err)
		}
	}
	rlChownTree(t, img, uid, gid)
	return img
}

// asUser runs strata as the unprivileged user name in dir.
func asUser(t testing.TB, name, dir string, args ...string) result {
	t.Helper()
	return rlRunIn(t, dir, "runuser", append([]string{"-u", name, "--", strataBin, "--quiet"}, args...)...)
}

// owners reads "PATH UID:GID" lines (stat -c '%n %u:%g') into a map.
func ownersOf(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "/") && strings.Contains(f[1], ":") {
			m[f[0]] = f[1]
		}
	}
	return m
}

// wantOwners checks the owners in got (from ownersOf) against want.
func wantOwners(t testing.TB, what string, got, want map[string]string, out string) {
	t.Helper()
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %s is %q, want %s\n%s", what, p, got[p], w, out)
		}
	}
}

// rlRunc runs the bundle b with runc inside strata's user namespace, as
// the user name, with args as the container's process; it returns what
// the process printed.
func rlRunc(t *testing.T, name, dir, b string, args ...string) string {
	t.Helper()
	cmtSetProcess(t, b, args)
	id := fmt.Sprintf("strata-own-%s-%d", filepath.Base(b), os.Getpid())
	r := asUser(t, name, dir, "mount", b, "--", "runc", "--root", filepath.Join(dir, "runc"), "run", "-b", b, id)
	if r.Code != 0 {
		t.Fatalf("runc run %s as %s: exit %d\nstdout: %s\nstderr: %s", b, name, r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// dockerOwners loads LAYOUT:ref, saved by the user name, into the engine
// and returns what stat prints for paths in a container of it.
func dockerOwners(t *testing.T, e *dockerEngine, name, dir, img, ref string, paths ...string) (map[string]string, string) {
	t.Helper()
	archive := filepath.Join(dir, strings.NewReplacer("/", "-", ":", "-").Replace(ref)+".tar")
	rlMust(t, asUser(t, name, dir, "save", "-o", archive, img+":"+ref))
	out := e.must(t, "load", "-i", archive)
	loaded := ""
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image: "); ok {
			loaded = n
		}
	}
	if loaded == "" {
		t.Fatalf("docker load of %s named no image:\n%s", ref, out)
	}
	stat := e.must(t, append([]string{"run", "--rm", "--network=none", "--user", "0:0", "--entrypoint", "/usr/bin/stat", loaded, "-c", "%n %u:%g"}, paths...)...)
	return ownersOf(stat), stat
}

// TestRootlessOwners is the rootless build loop with real owners: a user
// with a subordinate ID range unpacks with overlay, runs the container
// with runc inside strata's namespace, changes owners there and commits;
// the container shows the image's owners, the owners it set are what the
// commit records, and docker shows the committed image with exactly the
// owners the container showed. vfs inside strata's namespace gives the
// same owners. A user without subordinate IDs gets the same loop, within
// the limits the README states.
func TestRootlessOwners(t *testing.T) {
	needTool(t, "runc")
	uid, gid := rootlessAccount(t)
	e := startDockerd(t)
	dir := rootlessDir(t, uid, gid)
	img := ownersImage(t, dir, uid, gid)
	store := filepath.Join(dir, "store")
	t.Cleanup(func() { os.RemoveAll(store) })

	// As root (v1 has no USER): what the image says, then a user added,
	// owners changed to root, to another mapped ID, and away from an ID
	// the namespace cannot map.
	b := filepath.Join(dir, "b")
	ovlUnmountCleanup(t, b)
	rlMust(t, asUser(t, rootlessUser, dir, "--root", store, "unpack", "--driver", "overlay", img+":v1", b))
	script := `set -e
stat -c '%n %u:%g' /etc/shadow /var/mail /home/app /home/app/.profile /srv/far
echo ---
useradd -u 1500 -m bob
chown 0:0 /home/app
mkdir /srv/x
chown 1234:1234 /srv/x
chown 2000:3000 /srv/far
stat -c '%n %u:%g' /etc/shadow /etc/gshadow /etc/passwd /home/bob /home/bob/.bashrc /home/app /home/app/.profile /srv/x /srv/far /var/mail`
	out := rlRunc(t, rootlessUser, dir, b, "/bin/sh", "-c", script)
	before, after, _ := strings.Cut(out, "---")
	// /srv/far's owner is beyond the range: the container sees it as
	// root's (the README says so), its owner kept in the xattr.
	wantOwners(t, "container before", ownersOf(before), map[string]string{
		"/etc/shadow": "0:42", "/var/mail": "0:8", "/home/app": "1000:1000", "/home/app/.profile": "1000:1000", "/srv/far": "0:0",
	}, out)
	seen := ownersOf(after)
	wantOwners(t, "container after", seen, map[string]string{
		"/etc/shadow": "0:42", "/etc/gshadow": "0:42", "/home/bob": "1500:1500", "/home/bob/.bashrc": "1500:1500",
		"/home/app": "0:0", "/home/app/.profile": "1000:1000", "/srv/x": "1234:1234", "/srv/far": "2000:3000", "/var/mail": "0:8",
	}, out)
	// --root is a global flag, given before the command.
	rlMust(t, asUser(t, rootlessUser, dir, "--root", store, "commit", b, img+":example.com/strata/owners:v2"))
	paths := []string{"/etc/shadow", "/etc/gshadow", "/etc/passwd", "/home/bob", "/home/bob/.bashrc", "/home/app", "/home/app/.profile", "/srv/x", "/srv/far", "/var/mail"}
	got, stat := dockerOwners(t, e, rootlessUser, dir, img, "example.com/strata/owners:v2", paths...)
	wantOwners(t, "docker run of the committed image", got, seen, stat)

	// A USER 1000 image writes its own home.
	ba := filepath.Join(dir, "b-app")
	ovlUnmountCleanup(t, ba)
	rlMust(t, asUser(t, rootlessUser, dir, "--root", store, "unpack", "--driver", "overlay", img+":app", ba))
	out = rlRunc(t, rootlessUser, dir, ba, "/bin/sh", "-c", `set -e; id -u; id -g; touch /home/app/x; stat -c '%n %u:%g' /home/app/x /home/app /etc/shadow`)
	if !strings.HasPrefix(out, "1000\n1000\n") {
		t.Errorf("USER 1000:1000 ran as\n%s", out)
	}
	seen = ownersOf(out)
	wantOwners(t, "USER 1000 container", seen, map[string]string{"/home/app/x": "1000:1000", "/home/app": "1000:1000", "/etc/shadow": "0:42"}, out)
	rlMust(t, asUser(t, rootlessUser, dir, "commit", "--root", store, ba, img+":example.com/strata/owners:app2"))
	got, stat = dockerOwners(t, e, rootlessUser, dir, img, "example.com/strata/owners:app2", "/home/app/x", "/home/app", "/etc/shadow")
	wantOwners(t, "docker run of the committed USER 1000 image", got, seen, stat)

	// vfs, run inside strata's namespace (here by a strata the mount
	// starts), gives the namespace's owners too; its bundle runs there.
	bv := filepath.Join(dir, "b-vfs")
	rlMust(t, asUser(t, rootlessUser, dir, "mount", b, "--", strataBin, "--quiet", "--root", store, "unpack", img+":v1", bv))
	r := asUser(t, rootlessUser, dir, "mount", bv, "--", "sh", "-c", `chroot "$STRATA_ROOTFS" stat -c '%n %u:%g' /etc/shadow /var/mail /home/app`)
	rlMust(t, r)
	wantOwners(t, "vfs rootfs in strata's namespace", ownersOf(r.Stdout), map[string]string{"/etc/shadow": "0:42", "/var/mail": "0:8", "/home/app": "1000:1000"}, r.Stdout)
	r = asUser(t, rootlessUser, dir, "--root", store, "snapshots")
	rlMust(t, r)
	for _, want := range []string{"vfs", "overlay", "userns"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("snapshots listing lacks %q:\n%s", want, r.Stdout)
		}
	}
	// The user removes what belongs to its subordinate IDs through strata.
	for _, bd := range []string{b, ba, bv} {
		rlMust(t, asUser(t, rootlessUser, dir, "unshare", "--", "rm", "-rf", bd))
	}
	rlMust(t, asUser(t, rootlessUser, dir, "--root", store, "snapshots", "verify", img+":v1"))
	if err := os.RemoveAll(img); err != nil {
		t.Fatal(err)
	}
	rlMust(t, asUser(t, rootlessUser, dir, "--root", store, "snapshots", "gc"))
	if r := asUser(t, rootlessUser, dir, "--root", store, "snapshots", "--json"); strings.TrimSpace(r.Stdout) != "[]" {
		t.Errorf("snapshots left after gc: %s %s", r.Stdout, r.Stderr)
	}

	t.Run("single ID", func(t *testing.T) {
		u := rlEnsureUser(t, rootlessSingleUser, true)
		suid, _ := strconv.Atoi(u.Uid)
		sgid, _ := strconv.Atoi(u.Gid)
		sdir := rootlessDir(t, suid, sgid)
		simg := ownersImage(t, sdir, suid, sgid)
		sstore := filepath.Join(sdir, "store")
		t.Cleanup(func() { os.RemoveAll(sstore) })
		sb := filepath.Join(sdir, "b")
		ovlUnmountCleanup(t, sb)
		rlMust(t, asUser(t, rootlessSingleUser, sdir, "--root", sstore, "unpack", "--driver", "overlay", simg+":v1", sb))
		// Every file shows as root's; chown to another ID fails; a file
		// changed in place keeps its owner, one a program rewrites gets
		// the owner it saw.
		out := rlRunc(t, rootlessSingleUser, sdir, sb, "/bin/sh", "-c", `set -e
stat -c '%n %u:%g' /etc/shadow /var/mail /home/app
if chown 1000 /var/mail 2>/dev/null; then echo chown-worked; fi
chmod 2770 /var/mail
useradd -u 1500 bob
echo hi > /home/app/.profile`)
		if strings.Contains(out, "chown-worked") {
			t.Errorf("chown to an unmapped ID worked with one ID mapped:\n%s", out)
		}
		wantOwners(t, "single-ID container", ownersOf(out), map[string]string{"/etc/shadow": "0:0", "/var/mail": "0:0", "/home/app": "0:0"}, out)
		rlMust(t, asUser(t, rootlessSingleUser, sdir, "--root", sstore, "commit", sb, simg+":example.com/strata/owners:single"))
		got, stat := dockerOwners(t, e, rootlessSingleUser, sdir, simg, "example.com/strata/owners:single", "/var/mail", "/home/app/.profile", "/home/app", "/etc/shadow", "/etc/passwd", "/srv/far")
		wantOwners(t, "docker run of the single-ID commit", got, map[string]string{
			"/var/mail": "0:8", "/home/app/.profile": "1000:1000", "/home/app": "1000:1000", "/srv/far": "70000:70000",
			// useradd rewrote it as the root-owned file it saw.
			"/etc/shadow": "0:0", "/etc/passwd": "0:0",
		}, stat)
	})
}
