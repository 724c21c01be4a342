package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// attach, referrers and index through the command line, in-process: the
// tree, the type filter, and the usage and input errors with their exit
// statuses.
func TestAttachReferrersIndexCommands(t *testing.T) {
	f := newFixture(t)
	sbomFile := filepath.Join(t.TempDir(), "sbom.spdx.json")
	if err := os.WriteFile(sbomFile, []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sbom := strings.TrimSpace(mustStrata(t, "attach", "--artifact-type", "application/spdx+json", "--annotation", "by=ci", f.dir+":v1", sbomFile))
	sig := strings.TrimSpace(mustStrata(t, "attach", "--artifact-type", "application/vnd.example.sig", f.dir+":@"+sbom))
	tree := mustStrata(t, "referrers", f.dir+":v1")
	want := f.dir + "@" + f.v1.desc.Digest.String() + "\n" +
		"└── application/spdx+json\n" +
		"    └── " + sbom + "\n" +
		"        └── application/vnd.example.sig\n" +
		"            └── " + sig + "\n"
	if tree != want {
		t.Errorf("referrers tree:\n%s\nwant:\n%s", tree, want)
	}
	if out := mustStrata(t, "referrers", "--artifact-type", "application/vnd.none", f.dir+":v1"); strings.Contains(out, sbom) {
		t.Errorf("--artifact-type kept the SBOM:\n%s", out)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"attach without a type", []string{"attach", f.dir + ":v1", sbomFile}, 2, "--artifact-type"},
		{"attach bad annotation", []string{"attach", "--artifact-type", "a/b", "--annotation", "novalue", f.dir + ":v1"}, 2, "novalue"},
		{"attach missing file", []string{"attach", "--artifact-type", "a/b", f.dir + ":v1", "/no/such/file"}, 1, "/no/such/file"},
		{"attach unknown image", []string{"attach", "--artifact-type", "a/b", f.dir + ":nope"}, 1, "nope"},
		{"referrers unknown image", []string{"referrers", f.dir + ":nope"}, 1, "nope"},
		{"index create without a name", []string{"index", "create", f.dir, f.dir + ":v1"}, 2, "LAYOUT:NAME"},
		{"index create name taken", []string{"index", "create", f.dir + ":v1", f.dir + ":v1"}, 1, "index add"},
		{"index rm absent platform", []string{"index", "rm", f.dir + ":multi", "linux/s390x"}, 1, "linux/s390x"},
		{"index rm empty digest", []string{"index", "rm", f.dir + ":multi", "@"}, 1, `invalid reference "@"`},
		{"index rm not a selector", []string{"index", "rm", f.dir + ":multi", "a/b/c/d/e"}, 1, "neither a digest nor a platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := strataRun(t, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
		})
	}

	d := strings.TrimSpace(mustStrata(t, "index", "create", "--annotation", "k=v", f.dir+":both", f.dir+":v1", f.dir+":@"+f.arm.desc.Digest.String()))
	if d2 := strings.TrimSpace(mustStrata(t, "index", "rm", f.dir+":both", "linux/arm64")); d2 == d {
		t.Errorf("index rm left the index as it was (%s)", d)
	}
}

func TestSplitArtifactArg(t *testing.T) {
	exists := func(name string) bool { return name == "odd:name/x" }
	tests := []struct{ arg, path, mt string }{
		{"sbom.json", "sbom.json", ""},
		{"sbom.json:application/spdx+json", "sbom.json", "application/spdx+json"},
		{"a:b:text/plain", "a:b", "text/plain"},
		{"notes:v2", "notes:v2", ""},
		{":text/plain", ":text/plain", ""},
		{"odd:name/x", "odd:name/x", ""},
	}
	for _, tt := range tests {
		if p, mt := splitArtifactArg(tt.arg, exists); p != tt.path || mt != tt.mt {
			t.Errorf("splitArtifactArg(%q) = %q, %q; want %q, %q", tt.arg, p, mt, tt.path, tt.mt)
		}
	}
}

func FuzzSplitArtifactArg(f *testing.F) {
	for _, s := range []string{"sbom.json:application/spdx+json", "a:b", ":x/y", "", "f:"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, arg string, exists bool) {
		p, mt := splitArtifactArg(arg, func(string) bool { return exists })
		switch {
		case mt == "":
			if p != arg {
				t.Fatalf("%q: file %q, no type", arg, p)
			}
		case exists || p == "" || p+":"+mt != arg || !strings.Contains(mt, "/") || strings.Contains(mt, ":"):
			t.Fatalf("%q (exists %v): file %q, type %q", arg, exists, p, mt)
		}
	})
}

func TestParseAnnotations(t *testing.T) {
	got, err := parseAnnotations([]string{"a=1", "b=x=y", "c="})
	if err != nil || len(got) != 3 || got["a"] != "1" || got["b"] != "x=y" || got["c"] != "" {
		t.Fatalf("parseAnnotations = %v, %v", got, err)
	}
	for _, bad := range []string{"a", "=v", ""} {
		if _, err := parseAnnotations([]string{bad}); err == nil {
			t.Errorf("parseAnnotations(%q) passed", bad)
		}
	}
}

func FuzzParseAnnotations(f *testing.F) {
	for _, s := range []string{"a=1", "=", "k", "org.example.x=a=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, kv string) {
		m, err := parseAnnotations([]string{kv})
		if err != nil {
			if _, isUsage := err.(usageError); !isUsage {
				t.Fatalf("%q: %v is not a usage error", kv, err)
			}
			return
		}
		if len(m) != 1 {
			t.Fatalf("%q gave %v", kv, m)
		}
		for k, v := range m {
			if k == "" || k+"="+v != kv {
				t.Fatalf("%q gave %q=%q", kv, k, v)
			}
		}
	})
}
