package overlay

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpperIn(t *testing.T) {
	info := strings.Join([]string{
		`22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw`,
		`47 26 0:39 / /b/rootfs rw,relatime shared:1 master:2 - overlay none rw,lowerdir+=/s/1,upperdir=/b/.strata/upper,workdir=/b/.strata/work,redirect_dir=nofollow`,
		`48 26 0:40 / /with\040space/rootfs rw - overlay none rw,lowerdir=/l,upperdir=/with\040space/a\054b\134c,workdir=/w`,
		`49 26 0:41 / /ro rw - overlay none ro,lowerdir=/a:/b`,
		`50 26 0:42 / /hidden rw - overlay none rw,upperdir=/first`,
		`51 50 0:43 / /hidden rw - tmpfs tmpfs rw`,
		`garbage line`,
	}, "\n")
	cases := []struct {
		target, upper string
		found         bool
	}{
		{"/b/rootfs", "/b/.strata/upper", true},
		{"/with space/rootfs", `/with space/a,b\c`, true},
		{"/ro", "", true},
		{"/hidden", "", false}, // a tmpfs is mounted on top of the overlay
		{"/proc", "", false},
		{"/nothing", "", false},
	}
	for _, c := range cases {
		upper, found, err := upperIn(strings.NewReader(info), c.target)
		if err != nil || upper != c.upper || found != c.found {
			t.Errorf("upperIn(%s) = %q, %v, %v; want %q, %v", c.target, upper, found, err, c.upper, c.found)
		}
	}
}

func TestUpperDir(t *testing.T) {
	needRoot(t)
	d := t.TempDir()
	// A name with a space and a comma: escaped in mountinfo.
	base := filepath.Join(d, "a b,c")
	for _, s := range []string{"low", "up", "work", "m"} {
		if err := os.MkdirAll(filepath.Join(base, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := filepath.Join(base, "m")
	if _, err := mountedUpper(m); !errors.Is(err, ErrNotMounted) {
		t.Fatalf("UpperDir of a plain directory: %v", err)
	}
	mountT(t, m, Options{Lower: []string{filepath.Join(base, "low")}, Upper: filepath.Join(base, "up"), Work: filepath.Join(base, "work")})
	if got, err := mountedUpper(m); err != nil || got != filepath.Join(base, "up") {
		t.Fatalf("UpperDir = %q, %v", got, err)
	}
}

func FuzzParseMountinfo(f *testing.F) {
	for _, s := range []string{
		`47 26 0:39 / /b/rootfs rw,relatime shared:1 - overlay none rw,lowerdir+=/s/1,upperdir=/b/up\040x,workdir=/b/w`,
		`22 1 0:21 / /proc rw - proc proc rw`, `1 2 3 4 5 6 - a b`, `\`, `\0`, `\777`, `a\12`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, ok := parseMountinfo(line)
		if !ok {
			return
		}
		_ = m.option("upperdir")
		// Unescaping never grows a string.
		if len(unescapeOctal(line)) > len(line) {
			t.Fatalf("unescaped %q grew", line)
		}
		upperIn(strings.NewReader(line), m.point)
	})
}
