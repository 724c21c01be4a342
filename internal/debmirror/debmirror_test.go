package debmirror

import (
	"reflect"
	"testing"
)

func TestParseSourcesList(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Source
	}{
		{"plain", "deb http://deb.debian.org/debian bookworm main\n", []Source{{"http://deb.debian.org/debian", []string{"bookworm"}}}},
		{"options", "deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main contrib", []Source{{"https://m.example/debian", []string{"bookworm"}}}},
		{"split options", "deb [ arch=amd64 ] http://m/d bookworm main", []Source{{"http://m/d", []string{"bookworm"}}}},
		{"comment and src", "# deb http://x/d bookworm main\ndeb-src http://y/d bookworm main\n", nil},
		{"trailing comment", "deb http://m/d bookworm main # the mirror", []Source{{"http://m/d", []string{"bookworm"}}}},
		{"cdrom", "deb cdrom:[Debian]/ bookworm main", nil},
		{"unterminated options", "deb [arch=amd64 http://m/d bookworm", nil},
		{"short", "deb http://m/d", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseSourcesList([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestParseDeb822Sources(t *testing.T) {
	in := `Types: deb
# a comment
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm

Types: deb deb-src
URIs: http://a.example/debian
 https://b.example/debian
Suites: trixie
`
	got := ParseDeb822Sources([]byte(in))
	want := []Source{
		{"http://deb.debian.org/debian", []string{"bookworm", "bookworm-updates"}},
		{"http://deb.debian.org/debian-security", []string{"bookworm-security"}},
		{"http://a.example/debian", []string{"trixie"}},
		{"https://b.example/debian", []string{"trixie"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	for suite, mirror := range map[string]string{
		"bookworm":          "http://deb.debian.org/debian",
		"bookworm-security": "http://deb.debian.org/debian-security",
		"trixie":            "http://a.example/debian",
	} {
		if m, ok := Pick(got, suite); !ok || m != mirror {
			t.Errorf("Pick(%s) = %q, %v; want %q", suite, m, ok, mirror)
		}
	}
	if _, ok := Pick(got, "sid"); ok {
		t.Error("Pick found a mirror for a suite no source serves")
	}
}

func FuzzParseSources(f *testing.F) {
	f.Add([]byte("deb [arch=amd64] http://m/d bookworm main\n"))
	f.Add([]byte("Types: deb\nURIs: http://m/d\n http://n/d\nSuites: bookworm\n\n"))
	f.Add([]byte("Enabled: no\n\tx\n:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, s := range append(ParseSourcesList(b), ParseDeb822Sources(b)...) {
			if !isHTTPURI(s.URI) || len(s.Suites) == 0 {
				t.Fatalf("bad source %#v", s)
			}
		}
	})
}

func TestOSReleaseCodename(t *testing.T) {
	for in, want := range map[string]string{
		"NAME=\"Debian\"\nVERSION_CODENAME=bookworm\n": "bookworm",
		"VERSION_CODENAME=\"trixie\"":                  "trixie",
		"  VERSION_CODENAME='sid'  \n":                 "sid",
		"VERSION_CODENAME=\n":                          "",
		"":                                             "",
	} {
		if got := Codename([]byte(in)); got != want {
			t.Errorf("Codename(%q) = %q, want %q", in, got, want)
		}
	}
}
