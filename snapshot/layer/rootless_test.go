package layer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestRootlessEncoding(t *testing.T) {
	for _, tc := range []struct {
		uid, gid int
		want     []byte
	}{
		{0, 0, nil},
		{1000, 0, []byte{0x08, 0xe8, 0x07, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		// umoci's bytes for 0:42 (etc/shadow of a Debian tree).
		{0, 42, []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x10, 0x2a}},
		{1, 1, []byte{0x08, 0x01, 0x10, 0x01}},
		{65534, 65534, []byte{0x08, 0xfe, 0xff, 0x03, 0x10, 0xfe, 0xff, 0x03}},
	} {
		got := EncodeRootless(tc.uid, tc.gid)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("EncodeRootless(%d,%d) = %x, want %x", tc.uid, tc.gid, got, tc.want)
		}
		u, g, err := DecodeRootless(got)
		if err != nil || u != tc.uid || g != tc.gid {
			t.Errorf("DecodeRootless(%x) = %d,%d,%v", got, u, g, err)
		}
	}
}

// TestDecodeRootlessOlderForms reads the forms that leave a zero id out
// (strata before it wrote umoci's bytes, and any proto3 encoder).
func TestDecodeRootlessOlderForms(t *testing.T) {
	for _, tc := range []struct {
		in       []byte
		uid, gid int
	}{
		{[]byte{0x10, 0x05}, 0, 5},
		{[]byte{0x08, 0xe8, 0x07}, 1000, 0},
		{[]byte{0x08, 0x00, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f}, 0, 0},
	} {
		if u, g, err := DecodeRootless(tc.in); err != nil || u != tc.uid || g != tc.gid {
			t.Errorf("DecodeRootless(%x) = %d,%d,%v; want %d,%d", tc.in, u, g, err, tc.uid, tc.gid)
		}
	}
}

func FuzzDecodeRootless(f *testing.F) {
	f.Add([]byte{0x08, 0xe8, 0x07})
	f.Add([]byte{0x08, 0xe8, 0x07, 0x10, 0x05, 0x1a, 0x01, 0x00})
	f.Add([]byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		uid, gid, err := DecodeRootless(b)
		if err != nil {
			return
		}
		if uid < 0 || gid < 0 {
			t.Fatalf("negative ids %d:%d", uid, gid)
		}
		u2, g2, err := DecodeRootless(EncodeRootless(uid, gid))
		if err != nil || u2 != uid || g2 != gid {
			t.Fatalf("round trip %d:%d -> %d:%d (%v)", uid, gid, u2, g2, err)
		}
	})
}

func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "./a", "/abs", "../x", "a/../../x", "a/./b/", ".", "", "a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := cleanName(s)
		if err != nil {
			return
		}
		if n == ".." || len(n) >= 3 && n[:3] == "../" || len(n) > 0 && n[0] == '/' {
			t.Fatalf("cleanName(%q) = %q escapes", s, n)
		}
	})
}

func FuzzReadFiles(f *testing.F) {
	dir := f.TempDir()
	p := filepath.Join(dir, "seed")
	files := Files{"a": {Path: "a", Type: TypeReg, Mode: 0o644, Xattrs: map[string][]byte{"user.x": {1}}}, "d": {Path: "d", Type: TypeDir}}
	if err := WriteFiles(p, files); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	f.Add(b)
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "files")
		os.WriteFile(p, b, 0o644)
		got, err := ReadFiles(p)
		if err != nil {
			return
		}
		for k, e := range got {
			if k != e.Path || k == "" || k[0] == '/' {
				t.Fatalf("bad entry %q: %+v", k, e)
			}
		}
	})
}
