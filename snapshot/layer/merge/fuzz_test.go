package merge_test

import (
	"archive/tar"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// choices reads a fuzzer's bytes as a stream of small choices (0 once
// they run out).
type choices struct {
	b []byte
	i int
}

func (c *choices) pick(n int) int {
	if c.i >= len(c.b) || n <= 1 {
		c.i++
		return 0
	}
	v := int(c.b[c.i]) % n
	c.i++
	return v
}

func (c *choices) path() string {
	names := []string{"a", "b", "c", "d.x"}
	parts := make([]string, 1+c.pick(3))
	for i := range parts {
		parts[i] = names[c.pick(len(names))]
	}
	return strings.Join(parts, "/")
}

// randomStack makes up to four layers of up to twelve entries from data:
// files, directories, symlinks (relative, absolute, climbing), hardlinks,
// whiteouts, opaque markers, fifos and devices, on a few names.
func randomStack(data []byte) [][]byte {
	c := &choices{b: data}
	var tars [][]byte
	for l := 0; l < 1+c.pick(4); l++ {
		var ents []layertest.Entry
		for n := 0; n < 1+c.pick(12); n++ {
			p := c.path()
			var e layertest.Entry
			switch c.pick(10) {
			case 0, 1, 2:
				e = layertest.File(p, strings.Repeat("x", c.pick(5))+fmt.Sprint(l, n), 0)
			case 3, 4:
				e = layertest.Dir(p, 0)
			case 5:
				targets := []string{c.path(), "/" + c.path(), "../" + c.path(), "..", "/"}
				e = layertest.Symlink(p, targets[c.pick(len(targets))])
			case 6:
				e = layertest.Hardlink(p, c.path())
			case 7:
				e = layertest.Whiteout(p)
			case 8:
				if c.pick(2) == 0 {
					e = layertest.Opaque(p)
				} else {
					e = layertest.Fifo(p)
				}
			case 9:
				e = layertest.Char(p, 1, int64(c.pick(9)))
			}
			if e.Type != tar.TypeSymlink && !strings.Contains(e.Name, ".wh.") {
				modes := []int64{0o644, 0o755, 0o600, 0o4755, 0o700, 0o1777}
				e.Mode = modes[c.pick(len(modes))]
			}
			e.UID, e.GID = 1000*c.pick(2), 1000*c.pick(2)
			e.Mtime = layertest.Epoch.Add(time.Duration(c.pick(100)) * time.Second)
			if (e.Type == tar.TypeReg || e.Type == tar.TypeDir) && c.pick(6) == 0 {
				e.Xattrs = map[string]string{"user.k": fmt.Sprint(c.pick(3))}
			}
			ents = append(ents, e)
		}
		tars = append(tars, layertest.Tar(ents...))
	}
	return tars
}

// FuzzMerge merges random layer stacks and extracts the result, against
// extracting the layers one by one with snapshot/layer.Apply: both must
// give the same tree (or both refuse the stack).
func FuzzMerge(f *testing.F) {
	for _, s := range []string{
		"\x03\x05\x01\x02\x00\x00\x03\x01\x01\x07\x01\x00",
		"\x02\x08\x00\x01\x06\x02\x00\x00\x05\x01\x01\x00\x07\x00\x00\x00",
		"\x03\x0b\x01\x02\x03\x00\x04\x01\x02\x05\x02\x06\x00\x06\x03\x01\x02\x07\x01\x08\x02\x00\x09",
		"\x01\x04\x00\x05\x00\x00\x01\x00\x00\x03\x00\x01\x02\x03\x06\x00\x02\x00",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		layertest.NeedRoot(t)
		sameAsApply(t, randomStack(data))
	})
}
