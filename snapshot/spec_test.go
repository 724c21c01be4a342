package snapshot

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
		opts            SpecOptions
		userNS, network bool
		uid             uint32
	}{
		{"root", SpecOptions{}, false, true, 1000},
		{"rootless", SpecOptions{Rootless: true}, true, false, 0},
		// Run in strata's own namespace: no user namespace of its own,
		// and the image's user where the namespace maps it (here the
		// initial namespace maps everyone).
		{"rootless in strata's namespace", SpecOptions{Rootless: true, InNamespace: true}, false, false, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := GenerateSpec(img, rootfs, tt.opts)
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
