package snapshot

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestParseIDRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want IDRange
		ok   bool
	}{
		{"0:100000:65536", IDRange{0, 100000, 65536}, true},
		{"1000:1000:1", IDRange{1000, 1000, 1}, true},
		{"0:100000:0", IDRange{}, false},
		{"0:100000", IDRange{}, false},
		{"a:1:1", IDRange{}, false},
		{"-1:1:1", IDRange{}, false},
		{"4294967295:0:2", IDRange{}, false},
		{"0:4294967295:1", IDRange{0, 4294967295, 1}, true},
	} {
		got, err := ParseIDRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseIDRange(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	m := &IDMap{UIDs: []IDRange{{0, 100000, 1000}, {1000, 200000, 10}}, GIDs: []IDRange{{0, 300000, 65536}}}
	for _, tc := range []struct{ uid, gid, hu, hg int }{{0, 0, 100000, 300000}, {999, 5, 100999, 300005}, {1005, 1005, 200005, 301005}} {
		hu, hg, err := m.ToHost(tc.uid, tc.gid)
		if err != nil || hu != tc.hu || hg != tc.hg {
			t.Errorf("ToHost(%d,%d) = %d,%d,%v", tc.uid, tc.gid, hu, hg, err)
		}
		u, g, err := m.ToContainer(hu, hg)
		if err != nil || u != tc.uid || g != tc.gid {
			t.Errorf("ToContainer(%d,%d) = %d,%d,%v", hu, hg, u, g, err)
		}
	}
	if _, _, err := m.ToHost(1010, 0); err == nil {
		t.Error("uid outside the map was shifted")
	}
}

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
		{"", 0, 0, 0, true},
		{"alice", 1000, 1001, 2, true},
		{"1000", 1000, 1001, 2, true},
		{"alice:staff", 1000, 50, 0, true},
		{"alice:7", 1000, 7, 0, true},
		{"4242", 4242, 0, 0, true},
		{"4242:4242", 4242, 4242, 0, true},
		{"nobody", 0, 0, 0, false},
		{"alice:nogroup", 0, 0, 0, false},
		{"bad", 0, 0, 0, false},
	} {
		u, err := resolveUser(root, tc.spec)
		if (err == nil) != tc.ok {
			t.Errorf("resolveUser(%q): %v, want ok=%v", tc.spec, err, tc.ok)
			continue
		}
		if tc.ok && (u.UID != tc.uid || u.GID != tc.gid || len(u.AdditionalGids) != tc.extra) {
			t.Errorf("resolveUser(%q) = %+v, want %d:%d with %d groups", tc.spec, u, tc.uid, tc.gid, tc.extra)
		}
	}
	// An /etc/passwd that is a symlink out of the rootfs is read inside it.
	out := writeEtc(t, "evil:x:4242:4242::/:/bin/sh\n", "")
	root2 := t.TempDir()
	os.MkdirAll(filepath.Join(root2, "etc"), 0o755)
	os.Symlink(filepath.Join(out, "etc/passwd"), filepath.Join(root2, "etc/passwd"))
	if _, err := resolveUser(root2, "evil"); err == nil {
		t.Fatal("read a passwd file outside the rootfs")
	}
}

func FuzzResolveUser(f *testing.F) {
	f.Add("root:x:0:0::/:/bin/sh\n", "root:x:0:\n", "root")
	f.Add("a:x:1:2\n", "g:x:3:a,b\n", "a:g")
	f.Add(":::\n", "::\n", "1:x")
	f.Fuzz(func(t *testing.T, passwd, group, spec string) {
		root := writeEtc(t, passwd, group)
		_, _ = resolveUser(root, spec)
	})
}

func FuzzParseIDRange(f *testing.F) {
	for _, s := range []string{"0:100000:65536", "1:2", "a:b:c", "4294967295:0:1", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseIDRange(s)
		if err != nil {
			return
		}
		if r.Size == 0 || uint64(r.ContainerID)+uint64(r.Size) > 1<<32 || uint64(r.HostID)+uint64(r.Size) > 1<<32 {
			t.Fatalf("ParseIDRange(%q) accepted %+v", s, r)
		}
		m := &IDMap{UIDs: []IDRange{r}, GIDs: []IDRange{r}}
		u, g, err := m.ToHost(int(r.ContainerID), int(r.ContainerID+r.Size-1))
		if err != nil {
			t.Fatal(err)
		}
		if cu, cg, err := m.ToContainer(u, g); err != nil || cu != int(r.ContainerID) || cg != int(r.ContainerID+r.Size-1) {
			t.Fatalf("round trip of %+v: %d,%d (%v)", r, cu, cg, err)
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
