// Package debmirror finds what debootstrap needs to build a Debian tree
// like this machine's: the release codename and the mirror apt already
// uses (the one mirror known to be reachable from here, in CI too).
// Both the end-to-end tests and the benchmark bootstrap minbase trees.
package debmirror

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Source is one "deb" entry of apt's configuration: where a suite of
// Debian packages is served from.
type Source struct {
	URI    string
	Suites []string
}

// ParseSourcesList reads the one-line format of /etc/apt/sources.list:
// "deb [options] URI suite [component...]". deb-src lines, comments,
// non-HTTP URIs and malformed lines are ignored.
func ParseSourcesList(b []byte) []Source {
	var out []Source
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		// Options are "[ key=value ... ]", possibly split over fields.
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				continue
			}
			f = f[1:]
		}
		if len(f) < 2 || !isHTTPURI(f[0]) {
			continue
		}
		out = append(out, Source{URI: f[0], Suites: []string{f[1]}})
	}
	return out
}

// ParseDeb822Sources reads the deb822 format of /etc/apt/sources.list.d/
// *.sources: stanzas of "Key: value" fields separated by blank lines.
// Disabled stanzas and those without a "deb" type are ignored.
func ParseDeb822Sources(b []byte) []Source {
	var out []Source
	fields := map[string]string{}
	last := ""
	flush := func() {
		defer func() { fields = map[string]string{}; last = "" }()
		if en := strings.ToLower(strings.TrimSpace(fields["enabled"])); en == "no" || en == "false" {
			return
		}
		if !containsWord(fields["types"], "deb") {
			return
		}
		suites := strings.Fields(fields["suites"])
		if len(suites) == 0 {
			return
		}
		for _, u := range strings.Fields(fields["uris"]) {
			if isHTTPURI(u) {
				out = append(out, Source{URI: u, Suites: suites})
			}
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			// Continuation of the previous field.
			if last != "" {
				fields[last] += " " + strings.TrimSpace(line)
			}
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		last = strings.ToLower(strings.TrimSpace(k))
		fields[last] = strings.TrimSpace(v)
	}
	flush()
	return out
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

func isHTTPURI(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// Pick chooses the URI that serves suite itself (not -security or
// -updates, which debootstrap cannot bootstrap from).
func Pick(srcs []Source, suite string) (string, bool) {
	for _, s := range srcs {
		for _, su := range s.Suites {
			if su == suite {
				return s.URI, true
			}
		}
	}
	return "", false
}

// Mirror reads apt's configuration on this machine and returns the
// mirror serving suite, so debootstrap uses the same (reachable) mirror as
// apt-get.
func Mirror(suite string) (string, error) {
	var srcs []Source
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		srcs = append(srcs, ParseSourcesList(b)...)
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	deb822, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	sort.Strings(lists)
	sort.Strings(deb822)
	for _, p := range lists {
		if b, err := os.ReadFile(p); err == nil {
			srcs = append(srcs, ParseSourcesList(b)...)
		}
	}
	for _, p := range deb822 {
		if b, err := os.ReadFile(p); err == nil {
			srcs = append(srcs, ParseDeb822Sources(b)...)
		}
	}
	if u, ok := Pick(srcs, suite); ok {
		return u, nil
	}
	return "", fmt.Errorf("no apt source serves suite %q (read /etc/apt/sources.list and /etc/apt/sources.list.d)", suite)
}

// HostSuite is this machine's Debian codename, from /etc/os-release;
// bookworm when it names none.
func HostSuite() string {
	b, _ := os.ReadFile("/etc/os-release")
	if v := Codename(b); v != "" {
		return v
	}
	return "bookworm"
}

// Codename reads VERSION_CODENAME from os-release content ("" when
// absent or empty).
func Codename(b []byte) string {
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "VERSION_CODENAME="); ok {
			if v = strings.Trim(v, `"'`); v != "" {
				return v
			}
		}
	}
	return ""
}
