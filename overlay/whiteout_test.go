package overlay

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		in     string
		kind   NameKind
		target string
		bad    bool
	}{
		{in: "etc/passwd", kind: Plain, target: "etc/passwd"},
		{in: "./etc/", kind: Plain, target: "etc"},
		{in: "/", kind: Plain, target: "."},
		{in: "etc/.wh.passwd", kind: Whiteout, target: "etc/passwd"},
		{in: "./.wh.tmp", kind: Whiteout, target: "tmp"},
		{in: "/a/b/.wh..hidden", kind: Whiteout, target: "a/b/.hidden"},
		{in: "a/.wh..wh..opq", kind: Opaque, target: "a"},
		{in: ".wh..wh..opq", kind: Opaque, target: "."},
		{in: "a/.wh..wh.plnk", kind: Meta, target: "a/.wh..wh.plnk"},
		{in: "a/.wh..wh.plnk/123.456", kind: Plain, target: "a/.wh..wh.plnk/123.456"},
		{in: "../../.wh.x", kind: Whiteout, target: "x"},
		{in: "a/../../b/.wh.c", kind: Whiteout, target: "b/c"},
		{in: "a/.wh.", bad: true},
		{in: "a/.wh..", bad: true},
		{in: "a/.wh...", bad: true},
	}
	for _, tc := range tests {
		kind, target, err := ParseName(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrInvalidWhiteout) {
				t.Errorf("ParseName(%q): err = %v, want ErrInvalidWhiteout", tc.in, err)
			}
			continue
		}
		if err != nil || kind != tc.kind || target != tc.target {
			t.Errorf("ParseName(%q) = %v %q %v, want %v %q", tc.in, kind, target, err, tc.kind, tc.target)
		}
	}
}

func TestOCINames(t *testing.T) {
	tests := []struct {
		fn       func(string) string
		in, want string
	}{
		{WhiteoutName, "a/b", "a/.wh.b"},
		{WhiteoutName, "b", ".wh.b"},
		{OpaqueName, "a/b", "a/b/" + OpaqueWhiteout},
		{OpaqueName, "a/b/", "a/b/" + OpaqueWhiteout},
		{OpaqueName, ".", OpaqueWhiteout},
	}
	for _, tc := range tests {
		if got := tc.fn(tc.in); got != tc.want {
			t.Errorf("%q -> %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseName(f *testing.F) {
	for _, s := range []string{"a/.wh.b", ".wh..wh..opq", "a/.wh..wh.x", "../.wh..", "/./a//b/.wh.c", "", ".wh."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		kind, target, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidWhiteout) {
				t.Fatalf("ParseName(%q): unexpected error %v", s, err)
			}
			return
		}
		if target == "" || strings.HasPrefix(target, "/") || path.Clean(target) != target ||
			target == ".." || strings.HasPrefix(target, "../") {
			t.Fatalf("ParseName(%q) = %v %q: target not a clean path inside the root", s, kind, target)
		}
		switch kind {
		case Whiteout:
			if _, k2, _ := mustParse(WhiteoutName(target)); k2 != target {
				t.Fatalf("whiteout %q: round trip gives %q", target, k2)
			}
		case Opaque:
			if k, t2, _ := mustParse(OpaqueName(target)); k != Opaque || t2 != target {
				t.Fatalf("opaque %q: round trip gives %v %q", target, k, t2)
			}
		}
	})
}

func mustParse(s string) (NameKind, string, error) { return ParseName(s) }

func TestXattrNames(t *testing.T) {
	tests := []struct {
		x        Xattrs
		stored   string // name found on disk
		content  string // name in a layer; "" when private
		roundtrp bool
	}{
		{Trusted, "trusted.overlay.opaque", "", false},
		{Trusted, "trusted.overlay.origin", "", false},
		{Trusted, "trusted.overlay.overlay.opaque", "trusted.overlay.opaque", true},
		{Trusted, "user.overlay.opaque", "user.overlay.opaque", true},
		{Trusted, "security.capability", "security.capability", true},
		{User, "user.overlay.opaque", "", false},
		{User, "user.overlay.overlay.x", "user.overlay.x", true},
		{User, "trusted.overlay.opaque", "trusted.overlay.opaque", true},
		{User, "user.mime", "user.mime", true},
	}
	for _, tc := range tests {
		got, ok := ContentXattr(tc.stored, tc.x)
		if ok != (tc.content != "") || got != tc.content {
			t.Errorf("ContentXattr(%q, %v) = %q %v, want %q", tc.stored, tc.x, got, ok, tc.content)
		}
		if tc.roundtrp {
			if s := StoredXattr(tc.content, tc.x); s != tc.stored {
				t.Errorf("StoredXattr(%q, %v) = %q, want %q", tc.content, tc.x, s, tc.stored)
			}
		}
	}
}

func FuzzXattrNames(f *testing.F) {
	f.Add("trusted.overlay.opaque", true)
	f.Add("user.overlay.overlay.x", false)
	f.Fuzz(func(t *testing.T, name string, trusted bool) {
		x := User
		if trusted {
			x = Trusted
		}
		back, ok := ContentXattr(StoredXattr(name, x), x)
		if !ok || back != name {
			t.Fatalf("xattr %q does not survive storing in %v form: %q %v", name, x, back, ok)
		}
	})
}

// TestApplyWhiteout converts OCI whiteouts into a layer directory and
// checks the overlay form on disk.
func TestApplyWhiteout(t *testing.T) {
	needRoot(t)
	for _, x := range []Xattrs{Trusted, User} {
		t.Run(x.String(), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "keep"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "keep", "same-layer"), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			for _, n := range []string{"keep/.wh.gone", "new/deep/.wh.gone", "keep/.wh.same-layer", "op/.wh..wh..opq", ".wh..wh.plnk", "../../etc/.wh.x"} {
				kind, target, err := ParseName(n)
				if err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				if err := ApplyWhiteout(root, kind, target, x); err != nil {
					t.Fatalf("%s: %v", n, err)
				}
			}
			for _, w := range []string{"keep/gone", "new/deep/gone", "etc/x"} {
				fi, err := os.Lstat(filepath.Join(dir, w))
				if err != nil || !IsWhiteout(fi) {
					t.Errorf("%s: not a whiteout (%v)", w, err)
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, "keep", "same-layer")); err != nil || string(b) != "x" {
				t.Errorf("a whiteout replaced a file of its own layer: %q %v", b, err)
			}
			if ok, err := IsOpaque(filepath.Join(dir, "op"), x); err != nil || !ok {
				t.Errorf("op: opaque = %v %v", ok, err)
			}
			if ok, _ := IsOpaque(filepath.Join(dir, "keep"), x); ok {
				t.Errorf("keep: opaque without a marker")
			}
			if _, err := os.Lstat(filepath.Join(dir, ".wh..wh.plnk")); err == nil {
				t.Errorf("meta entry was written")
			}
		})
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t, "it mounts overlay and writes trusted.* xattrs")
}
