package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	srun "github.com/strata-oci/strata/snapshot/run"
)

func TestParseMount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want srun.Mount
		bad  string
	}{
		{in: "type=bind,src=/a,dst=/b", want: srun.Mount{Type: "bind", Source: "/a", Destination: "/b"}},
		{in: "type=bind,source=/a,target=/b,readonly", want: srun.Mount{Type: "bind", Source: "/a", Destination: "/b", ReadOnly: true}},
		{in: "src=/a,destination=/b,ro=true,bind-propagation=rslave", want: srun.Mount{Type: "bind", Source: "/a", Destination: "/b", ReadOnly: true, Options: []string{"rslave"}}},
		{in: "type=bind,src=/a,dst=/b,readonly=false", want: srun.Mount{Type: "bind", Source: "/a", Destination: "/b"}},
		{in: "type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=700", want: srun.Mount{Type: "tmpfs", Destination: "/t", Options: []string{"size=64m", "mode=700"}}},
		{in: "type=volume,dst=/v", bad: "type"},
		{in: "type=bind,dst=/b", bad: "source"},
		{in: "type=bind,src=/a", bad: "target"},
		{in: "type=bind,src=/a,dst=b", bad: "absolute"},
		{in: "type=bind,src=/a,dst=/b,ro=maybe", bad: "true or false"},
		{in: "type=bind,src=/a,dst=/b,tmpfs-size=1", bad: "tmpfs"},
		{in: "type=tmpfs,src=/a,dst=/b", bad: "source"},
		{in: "type=tmpfs,dst=/b,tmpfs-mode=9", bad: "octal"},
		{in: "type=bind,src=/a,dst=/b,z", bad: "unknown option"},
		{in: "type=bind,src=/a,dst=/b,bind-propagation=odd", bad: "propagation"},
	} {
		got, err := parseMount(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("parseMount(%q) = %v, want an error naming %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || got.Type != tc.want.Type || got.Source != tc.want.Source || got.Destination != tc.want.Destination ||
			got.ReadOnly != tc.want.ReadOnly || strings.Join(got.Options, ",") != strings.Join(tc.want.Options, ",") {
			t.Errorf("parseMount(%q) = %+v %v, want %+v", tc.in, got, err, tc.want)
		}
	}
	rel, err := parseMount("type=bind,src=rel,dst=/b")
	if wd, _ := os.Getwd(); err != nil || rel.Source != filepath.Join(wd, "rel") {
		t.Errorf("a relative source: %+v %v", rel, err)
	}
}

func TestParseVolume(t *testing.T) {
	wd, _ := os.Getwd()
	for _, tc := range []struct {
		in       string
		src, dst string
		ro       bool
		bad      string
	}{
		{in: "/a:/b", src: "/a", dst: "/b"},
		{in: "/a:/b:ro", src: "/a", dst: "/b", ro: true},
		{in: "./a:/b:rw", src: filepath.Join(wd, "a"), dst: "/b"},
		{in: "name:/b", bad: "named volumes"},
		{in: "/a", bad: "HOSTPATH:PATH"},
		{in: "/a:/b:ro:x", bad: "HOSTPATH:PATH"},
		{in: "/a:b", bad: "absolute"},
		{in: "/a:/b:z", bad: "ro or rw"},
	} {
		got, err := parseVolume(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("parseVolume(%q) = %v, want an error naming %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || got.Source != tc.src || got.Destination != tc.dst || got.ReadOnly != tc.ro || got.Type != srun.MountBind {
			t.Errorf("parseVolume(%q) = %+v %v", tc.in, got, err)
		}
	}
}

func TestEnvFlags(t *testing.T) {
	t.Setenv("STRATA_TEST_SET", "here")
	os.Unsetenv("STRATA_TEST_UNSET")
	file := filepath.Join(t.TempDir(), "env")
	os.WriteFile(file, []byte("# comment\n\nA=1\n  B=\"quoted\"\nSTRATA_TEST_SET\nSTRATA_TEST_UNSET\nC=with=equals\n"), 0o644)
	got, err := readEnvFile(file)
	if want := `A=1 B="quoted" STRATA_TEST_SET=here C=with=equals`; err != nil || strings.Join(got, " ") != want {
		t.Fatalf("readEnvFile = %q %v, want %s", got, err, want)
	}
	os.WriteFile(file, []byte("A=1\nBAD KEY=2\n"), 0o644)
	if _, err := readEnvFile(file); err == nil || !strings.Contains(err.Error(), file+":2") {
		t.Fatalf("a bad line: %v", err)
	}
	if _, _, err := envValue("=x"); err == nil {
		t.Fatal("no name accepted")
	}
}

func TestImageArgs(t *testing.T) {
	cfg := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"default"}}
	for _, tc := range []struct {
		ep    string
		epSet bool
		cmd   []string
		want  string
	}{
		{"", false, nil, "/ep default"},
		{"", false, []string{"x", "y"}, "/ep x y"},
		{"/other", true, nil, "/other"},
		{"/other", true, []string{"x"}, "/other x"},
		{"", true, []string{"sh"}, "sh"},
		{"", true, nil, ""},
	} {
		if got := strings.Join(imageArgs(cfg, tc.ep, tc.epSet, tc.cmd), " "); got != tc.want {
			t.Errorf("imageArgs(%q, %v, %v) = %q, want %q", tc.ep, tc.epSet, tc.cmd, got, tc.want)
		}
	}
}

func FuzzParseMount(f *testing.F) {
	f.Add("type=bind,src=/a,dst=/b,ro")
	f.Add("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1777")
	f.Add("=,,=")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMount(s)
		if err == nil && (!strings.HasPrefix(m.Destination, "/") || (m.Type == srun.MountBind && !filepath.IsAbs(m.Source))) {
			t.Fatalf("parseMount(%q) accepted %+v", s, m)
		}
	})
}

func FuzzParseVolume(f *testing.F) {
	f.Add("/a:/b:ro")
	f.Add("./x:/y")
	f.Add(":::")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseVolume(s)
		if err == nil && (!strings.HasPrefix(m.Destination, "/") || !filepath.IsAbs(m.Source)) {
			t.Fatalf("parseVolume(%q) accepted %+v", s, m)
		}
	})
}

func FuzzReadEnvFile(f *testing.F) {
	f.Add("A=1\n# c\nB\n")
	f.Add("\x00=\n=\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "env")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		env, err := readEnvFile(p)
		for _, e := range env {
			if k, _, ok := strings.Cut(e, "="); err == nil && (!ok || k == "") {
				t.Fatalf("readEnvFile(%q) gave %q", body, e)
			}
		}
	})
}
