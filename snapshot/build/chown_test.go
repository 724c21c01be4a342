package build

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
)

// chownRoot is a rootfs holding passwd and group as given.
func chownRoot(t testing.TB, passwd, group string) *fsx.Tree {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644); err != nil {
		t.Fatal(err)
	}
	tr, err := fsx.OpenTree(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestParseChown(t *testing.T) {
	tr := chownRoot(t, "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbad:x:notanumber:0::/:/bin/sh\n",
		"root:x:0:\nstaff:x:50:\n")
	for _, c := range []struct {
		in       string
		uid, gid int
		bad      bool
	}{
		{in: "1000", uid: 1000, gid: 1000},
		{in: "app", uid: 1000, gid: 1000},
		{in: "app:staff", uid: 1000, gid: 50},
		{in: "5:7", uid: 5, gid: 7},
		{in: "app:7", uid: 1000, gid: 7},
		{in: "nobody", bad: true},
		{in: "app:nogroup", bad: true},
		{in: "bad", bad: true},
		{in: "-1", bad: true},
	} {
		uid, gid, err := parseChown(tr, c.in)
		if c.bad {
			if err == nil {
				t.Errorf("--chown=%s: got %d:%d, want an error", c.in, uid, gid)
			}
			continue
		}
		if err != nil || uid != c.uid || gid != c.gid {
			t.Errorf("--chown=%s: %d:%d, %v; want %d:%d", c.in, uid, gid, err, c.uid, c.gid)
		}
	}
}

// FuzzParseChown reads any --chown value against any passwd file: an
// accepted owner is never negative.
func FuzzParseChown(f *testing.F) {
	f.Add("app:staff", "app:x:1000:1000::/:/bin/sh\n")
	f.Add("x", "x:x:-5:0\n")
	f.Add(":", "::::\n")
	f.Fuzz(func(t *testing.T, chown, passwd string) {
		tr := chownRoot(t, passwd, passwd)
		uid, gid, err := parseChown(tr, chown)
		if err == nil && (uid < 0 || gid < 0) {
			t.Fatalf("--chown=%s with passwd %q gave %d:%d", chown, passwd, uid, gid)
		}
	})
}
