package transport

import (
	"errors"
	"testing"
)

func TestParseDockerName(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "//localhost:5000/a/b:v1", want: "localhost:5000/a/b:v1"},
		{in: "//busybox", want: "docker.io/library/busybox:latest"},
		{in: "//ghcr.io/o/r@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{in: "localhost:5000/a", bad: true},
		{in: "//", bad: true},
		{in: "//a/Bad", bad: true},
	}
	for _, tt := range tests {
		r, err := parseDockerName(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrInvalidName) {
				t.Errorf("parseDockerName(%q) = %v, %v; want ErrInvalidName", tt.in, r, err)
			}
			continue
		}
		if err != nil || r.String() != tt.want {
			t.Errorf("parseDockerName(%q) = %q, %v; want %q", tt.in, r.String(), err, tt.want)
		}
	}
	// Through the registry of transports.
	src, err := ParseSource("docker://localhost:5000/a:v1")
	if err != nil || src.String() != "docker://localhost:5000/a:v1" {
		t.Fatalf("ParseSource = %v, %v", src, err)
	}
	dst, err := ParseDestination("docker://localhost:5000/a")
	if err != nil || dst.String() != "docker://localhost:5000/a:latest" || len(dst.Names()) != 1 {
		t.Fatalf("ParseDestination = %v, %v", dst, err)
	}
}

func FuzzParseDockerName(f *testing.F) {
	for _, s := range []string{"//a/b:c", "//localhost:5000/x@sha256:00", "x", "///"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseDockerName(s)
		if err != nil {
			return
		}
		again, err := parseDockerName("//" + r.String())
		if err != nil || again != r {
			t.Fatalf("%q -> %q -> %v, %v", s, r.String(), again, err)
		}
	})
}
