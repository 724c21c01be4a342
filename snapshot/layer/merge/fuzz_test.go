package merge_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/snapshot/layer/merge"
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

// FuzzMergeRaw reads two layers of arbitrary bytes (a tar, compressed or
// not, or anything): Read and WriteTar must refuse them or succeed
// without panicking, and a merged tar, read again as one layer, must be
// a fixed point: the same tree (Compare finds nothing) and the same
// bytes written again.
func FuzzMergeRaw(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, and a standard layer (tens of KiB) takes it a minute.
	F := layertest.File
	f.Add(layertest.Tar(layertest.Dir("d", 0o755), F("d/f", "one", 0o644), layertest.Hardlink("d/g", "d/f"), layertest.Symlink("s", "d")),
		layertest.Tar(layertest.Opaque("d"), F("s/h", "through the link", 0o600), layertest.Whiteout("d/f"), layertest.Fifo("p")))
	f.Add(layertest.Gzip(layertest.Tar(layertest.Owned(F("a", "x", 0o4755), 1000, 1000), layertest.Char("c", 1, 3))),
		layertest.Tar(layertest.WithXattrs(F("a", "yy", 0o644), map[string]string{"user.k": "v"}), layertest.Whiteout("c")))
	f.Add([]byte("not a tar"), []byte{})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		ctx := context.Background()
		tree, err := merge.Read(ctx, stack(a, b), merge.Options{})
		if err != nil {
			return
		}
		// A sparse entry may declare any size: its holes are written out.
		var out bytes.Buffer
		if err := tree.WriteTar(ctx, &capped{w: &out, left: 32 << 20}, merge.WriteOptions{}); err != nil {
			return
		}
		again, err := merge.Read(ctx, stack(out.Bytes()), merge.Options{})
		if err != nil {
			t.Fatalf("the merged tar does not read back: %v", err)
		}
		changes, err := merge.Compare(ctx, tree, again)
		if err != nil {
			t.Fatalf("compare: %v", err)
		}
		for _, c := range changes {
			t.Errorf("read back: %c %s %v", c.Kind, c.Path, c.Fields)
		}
		var out2 bytes.Buffer
		if err := again.WriteTar(ctx, &out2, merge.WriteOptions{}); err != nil {
			t.Fatalf("the merged tar does not write again: %v", err)
		}
		if !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Error("the merged tar written again differs")
		}
	})
}

// capped fails writes beyond left bytes.
type capped struct {
	w    *bytes.Buffer
	left int
}

func (c *capped) Write(p []byte) (int, error) {
	if len(p) > c.left {
		return 0, errors.New("output over the fuzz target's limit")
	}
	c.left -= len(p)
	return c.w.Write(p)
}
