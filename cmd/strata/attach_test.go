package main

import (
	"strings"
	"testing"
)

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
