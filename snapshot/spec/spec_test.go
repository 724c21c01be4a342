package spec

import (
	"os"
	"path/filepath"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGenerateSpecForms(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := &ocispec.Image{Config: ocispec.ImageConfig{User: "app", Cmd: []string{"/bin/true"}}}
	has := func(s *specs.Spec, typ specs.LinuxNamespaceType) bool {
		for _, n := range s.Linux.Namespaces {
			if n.Type == typ {
				return true
			}
		}
		return false
	}
	tests := []struct {
		name            string
		opts            Options
		userNS, network bool
		uid             uint32
	}{
		{"root", Options{}, false, true, 1000},
		{"rootless", Options{Rootless: true}, true, false, 0},
		// Run in strata's own namespace: no user namespace of its own,
		// and the image's user where the namespace maps it (here the
		// initial namespace maps everyone).
		{"rootless in strata's namespace", Options{Rootless: true, InNamespace: true}, false, false, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Generate(img, rootfs, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if has(s, specs.UserNamespace) != tt.userNS || has(s, specs.NetworkNamespace) != tt.network {
				t.Fatalf("namespaces %+v", s.Linux.Namespaces)
			}
			if !tt.userNS && (len(s.Linux.UIDMappings) != 0 || len(s.Linux.GIDMappings) != 0) {
				t.Fatalf("mappings without a user namespace: %+v", s.Linux.UIDMappings)
			}
			if s.Process.User.UID != tt.uid {
				t.Fatalf("user %+v, want uid %d", s.Process.User, tt.uid)
			}
		})
	}
}

func writeEtc(t testing.TB, passwd, group string) string {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte(passwd), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte(group), 0o644)
	return root
}

func TestResolveUser(t *testing.T) {
	root := writeEtc(t, "root:x:0:0::/root:/bin/sh\nalice:x:1000:1001::/home/alice:/bin/sh\n#c\nbad:x:y:z\n",
		"root:x:0:\nstaff:x:50:alice,bob\nalice:x:1001:\nwheel:x:10:alice\n")
	for _, tc := range []struct {
		spec     string
		uid, gid uint32
		extra    int
		ok       bool
	}{
		{"", 0, 0, 1, true},
		{"alice", 1000, 1001, 3, true},
		{"1000", 1000, 1001, 3, true},
		{"alice:staff", 1000, 50, 1, true},
		{"alice:7", 1000, 7, 1, true},
		{"4242", 4242, 0, 1, true},
		{"4242:4242", 4242, 4242, 1, true},
		{"nobody", 0, 0, 0, false},
		{"alice:nogroup", 0, 0, 0, false},
		{"bad", 0, 0, 0, false},
	} {
		u, err := ResolveUser(root, tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("ResolveUser(%q): %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		if tc.ok && (u.UID != tc.uid || u.GID != tc.gid || len(u.AdditionalGids) != tc.extra) {
			t.Errorf("ResolveUser(%q) = %+v, want %d:%d with %d groups", tc.spec, u, tc.uid, tc.gid, tc.extra)
		}
	}
	// An /etc/passwd that is a symlink out of the rootfs is read inside it.
	out := writeEtc(t, "evil:x:4242:4242::/:/bin/sh\n", "")
	root2 := t.TempDir()
	os.MkdirAll(filepath.Join(root2, "etc"), 0o755)
	os.Symlink(filepath.Join(out, "etc/passwd"), filepath.Join(root2, "etc/passwd"))
	if _, err := ResolveUser(root2, "evil"); err == nil {
		t.Fatal("read a passwd file outside the rootfs")
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("root:x:0:0::/:/bin/sh\n", "root:x:0:\n", "root")
	f.Add("a:x:1:2\n", "g:x:3:a,b\n", "a:g")
	f.Add(":::\n", "::\n", "1:x")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		root := writeEtc(t, passwd, group)
		_, _ = ResolveUser(root, spec)
	})
}
