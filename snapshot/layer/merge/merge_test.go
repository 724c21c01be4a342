package merge_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layer/merge"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// stack turns uncompressed (or compressed) layer tars into merge layers.
func stack(tars ...[]byte) []merge.Layer {
	out := make([]merge.Layer, len(tars))
	for i, b := range tars {
		out[i] = merge.Layer{Name: fmt.Sprintf("test%d", i), Open: func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(b)), nil
		}}
	}
	return out
}

// applied extracts the layers one after the other into a new directory,
// as vfs does, or fails with the extractor's error.
func applied(t testing.TB, tars [][]byte) (string, error) {
	dir := t.TempDir()
	files := layer.Files{}
	for i, b := range tars {
		if err := layer.Apply(context.Background(), dir, bytes.NewReader(b), layer.ApplyOptions{}, files); err != nil {
			return "", fmt.Errorf("layer %d: %w", i, err)
		}
	}
	return dir, nil
}

// merged writes the merged tar of the layers and extracts it.
func merged(t testing.TB, tars [][]byte) (string, []byte, error) {
	tree, err := merge.Read(context.Background(), stack(tars...), merge.Options{})
	if err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	if err := tree.WriteTar(context.Background(), &buf, merge.WriteOptions{TempDir: t.TempDir()}); err != nil {
		return "", nil, err
	}
	dir := t.TempDir()
	if err := layer.Apply(context.Background(), dir, bytes.NewReader(buf.Bytes()), layer.ApplyOptions{}, layer.Files{}); err != nil {
		return "", nil, fmt.Errorf("the merged tar does not extract: %w", err)
	}
	return dir, buf.Bytes(), nil
}

// describe is layertest.DescribeTree without directory mtimes: a
// directory no layer lists gets the time of its extraction.
func describe(t testing.TB, root string) map[string]string {
	m := layertest.DescribeTree(t, root)
	for k, v := range m {
		if strings.HasPrefix(v, "type=40000 ") {
			if i := strings.Index(v, " mtime="); i >= 0 {
				j := strings.IndexByte(v[i+1:], ' ')
				if j < 0 {
					v = v[:i]
				} else {
					v = v[:i] + v[i+1+j:]
				}
			}
			m[k] = v
		}
	}
	return m
}

// sameAsApply checks that merging the layers gives the tree extracting
// them one by one gives.
func sameAsApply(t *testing.T, tars [][]byte) {
	t.Helper()
	want, aerr := applied(t, tars)
	got, _, merr := merged(t, tars)
	switch {
	case aerr != nil && merr != nil:
		return
	case aerr != nil:
		t.Fatalf("the extractor refuses the stack (%v), merge does not", aerr)
	case merr != nil:
		t.Fatalf("merge refuses the stack (%v), the extractor does not", merr)
	}
	layertest.DiffTrees(t, "applied", describe(t, want), "merged", describe(t, got))
}

func TestMergeStandard(t *testing.T) {
	layertest.NeedRoot(t)
	ls := layertest.Standard(nil)
	E := layertest.File
	// A fourth layer: the targets of hardlinks replaced and removed, a
	// symlinked directory written through, an opaque directory made anew.
	l4 := layertest.Tar(
		E("etc/motd", "layer four\n", 0o644), // app-link keeps layer two's
		layertest.Whiteout("usr/bin/ping"),   // ping-link keeps it
		E("lib/libm.so", "libm", 0o755),      // lib -> usr/lib
		layertest.Dir("opq", 0o700),
		layertest.Opaque("opq"),
		E("opq/only", "only", 0o600),
		layertest.Hardlink("hl-to-symlink", "lib"),
	)
	sameAsApply(t, append(ls, l4))
}

func TestMergeDuplicates(t *testing.T) {
	layertest.NeedRoot(t)
	for _, d := range layertest.Duplicates {
		t.Run(d.Name, func(t *testing.T) {
			base := layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/lower", "lower", 0o644), layertest.File("a", "lower a", 0o644))
			sameAsApply(t, [][]byte{base, layertest.Tar(d.Entries...)})
		})
	}
}

func TestMergeCases(t *testing.T) {
	layertest.NeedRoot(t)
	F, D, S, H, W, O := layertest.File, layertest.Dir, layertest.Symlink, layertest.Hardlink, layertest.Whiteout, layertest.Opaque
	cases := map[string][][]layertest.Entry{
		"link target replaced later": {
			{F("a", "one", 0o644), H("b", "a")},
			{F("a", "two", 0o600)},
		},
		"link target removed later": {
			{D("d", 0o755), F("d/a", "one", 0o644)},
			{H("l", "d/a")},
			{W("d")},
		},
		"link across layers, first name later in tree order": {
			{F("z", "zed", 0o644)},
			{H("a", "z"), F("m", "m", 0o644)},
		},
		"three names, the first removed": {
			{F("a", "x", 0o644), H("b", "a"), H("c", "a")},
			{W("a")},
		},
		"hardlink to a symlink": {
			{S("s", "target"), H("h", "s")},
		},
		"opaque keeps this layer's entries": {
			{D("o", 0o755), F("o/x", "x", 0o644), D("o/sub", 0o755), F("o/sub/y", "y", 0o644)},
			{F("o/sub/new", "n", 0o644), O("o"), F("o/after", "a", 0o644)},
		},
		"whiteout then recreate": {
			{D("d", 0o755), F("d/x", "x", 0o644)},
			{W("d"), D("d", 0o700), F("d/y", "y", 0o644)},
		},
		"parent through symlinks": {
			{D("real", 0o755), S("link", "real"), S("abs", "/real"), S("up", "../../real")},
			{F("link/a", "a", 0o644), F("abs/b", "b", 0o644), F("up/c", "c", 0o644), F("link/sub/d", "d", 0o644)},
			{W("link/a"), H("abs/h", "up/c")},
		},
		"implicit parents": {
			{F("x/y/z", "deep", 0o644)},
			{D("x", 0o700)},
		},
		"file replaces directory with a link inside": {
			{D("d", 0o755), F("d/f", "f", 0o644), H("keep", "d/f")},
			{F("d", "file now", 0o644)},
		},
		"devices and fifos": {
			{layertest.Char("null", 1, 3), layertest.Fifo("p"), H("null2", "null")},
			{W("p")},
		},
		"root entry": {
			{D(".", 0o700), F("f", "f", 0o644)},
			{layertest.Owned(D("./", 0o750), 5, 6)},
		},
		"xattrs and owners": {
			{layertest.WithXattrs(layertest.Owned(F("x", "x", 0o640), 1000, 1001), map[string]string{"user.a": "1", "security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"})},
			{layertest.WithXattrs(D("dd", 0o755), map[string]string{"user.d": "d"})},
		},
	}
	for name, ls := range cases {
		t.Run(name, func(t *testing.T) {
			var tars [][]byte
			for _, l := range ls {
				tars = append(tars, layertest.Tar(l...))
			}
			sameAsApply(t, tars)
		})
	}
}

// TestMergeSpool has contents read before their turn: a layer written
// in reverse order, and large enough that part of it goes to the spool
// file.
func TestMergeSpool(t *testing.T) {
	layertest.NeedRoot(t)
	var ents []layertest.Entry
	big := strings.Repeat("x", 300<<10)
	for i := 40; i >= 0; i-- {
		body := fmt.Sprintf("file %d", i)
		if i%4 == 0 {
			body = big + body
		}
		ents = append(ents, layertest.File(fmt.Sprintf("f%02d", i), body, 0o644))
	}
	ents = append(ents, layertest.Hardlink("a-first", "f40"))
	sameAsApply(t, [][]byte{layertest.Tar(ents...)})
}

func TestMergeDeterministic(t *testing.T) {
	ls := layertest.Standard(nil)
	var outs [][]byte
	for i := 0; i < 2; i++ {
		tree, err := merge.Read(context.Background(), stack(ls...), merge.Options{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := tree.WriteTar(context.Background(), &buf, merge.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, buf.Bytes())
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two merges of one stack differ")
	}
	// Tree order, directories first, hardlinks to an earlier name.
	tr := tar.NewReader(bytes.NewReader(outs[0]))
	seen := map[string]bool{}
	prev := ""
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(h.Name, "/")
		if dir := filepath.Dir(name); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its directory", name)
		}
		if h.Typeflag == tar.TypeLink && !seen[h.Linkname] {
			t.Errorf("%s links to %s, not written before it", name, h.Linkname)
		}
		if prev != "" && treeLess(name, prev) {
			t.Errorf("%s after %s: not in tree order", name, prev)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s has owner names", name)
		}
		seen[name], prev = true, name
	}
}

// treeLess orders paths as a depth-first walk with names in byte order.
func treeLess(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

func TestMergeCompressedAndDiffID(t *testing.T) {
	raw := layertest.Tar(layertest.File("a", "a", 0o644))
	ls := stack(layertest.Gzip(raw))
	ls[0].DiffID = layertest.DiffID(raw)
	if _, err := merge.Read(context.Background(), ls, merge.Options{}); err != nil {
		t.Fatal(err)
	}
	ls[0].DiffID = layertest.DiffID([]byte("other"))
	_, err := merge.Read(context.Background(), ls, merge.Options{})
	if !errors.Is(err, merge.ErrDiffIDMismatch) || !strings.Contains(err.Error(), "layer 0 (test0)") {
		t.Fatalf("got %v, want a diffID mismatch naming the layer", err)
	}
}

func TestMergeRefuses(t *testing.T) {
	F, H := layertest.File, layertest.Hardlink
	cases := map[string][]layertest.Entry{
		"dotdot":             {F("../x", "x", 0o644)},
		"hardlink to none":   {H("a", "missing")},
		"hardlink to itself": {H("a", "a")},
		"root as a file":     {F(".", "x", 0o644)},
		"under a file":       {F("f", "f", 0o644), F("f/g", "g", 0o644)},
		"hardlink to a dir":  {layertest.Dir("d", 0o755), H("h", "d")},
	}
	for name, ents := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := merge.Read(context.Background(), stack(layertest.Tar(ents...)), merge.Options{})
			if err == nil {
				t.Fatal("merged")
			}
			if !strings.Contains(err.Error(), "layer 0") {
				t.Errorf("error %q names no layer", err)
			}
		})
	}
	_, err := merge.Read(context.Background(), stack([]byte("not a tar at all, not even close to one; longer than a block? no")), merge.Options{})
	if err == nil {
		t.Fatal("a non-tar layer merged")
	}
}

func TestMergeCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := merge.Read(ctx, stack(layertest.Standard(nil)...), merge.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	tree, err := merge.Read(context.Background(), stack(layertest.Standard(nil)...), merge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.WriteTar(ctx, io.Discard, merge.WriteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestWalk(t *testing.T) {
	tree, err := merge.Read(context.Background(), stack(layertest.Standard(nil)...), merge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*merge.File{}
	var order []string
	err = tree.Walk(func(f *merge.File) error {
		got[f.Path] = f
		order = append(order, f.Path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if order[0] != "." || len(order) != tree.Len() {
		t.Fatalf("walk gave %d files from %q, tree has %d", len(order), order[0], tree.Len())
	}
	for p, want := range map[string]string{
		"etc/motd": "layer 1 -> app-link", "app": "layer 2", "app-link": "layer 2", "big-link": "layer 0 -> big",
		"usr/lib/libc.so": "layer 2", "opq/upper": "layer 1",
	} {
		f := got[p]
		if f == nil {
			t.Errorf("%s missing", p)
			continue
		}
		s := fmt.Sprintf("layer %d", f.Layer)
		if f.HardlinkTo != "" {
			s += " -> " + f.HardlinkTo
		}
		if s != want {
			t.Errorf("%s: %s, want %s", p, s, want)
		}
	}
	for _, p := range []string{"gone-file", "gone-dir", "gone-dir/a", "opq/lower", "opq/sub", "usr/share-note"} {
		if got[p] != nil {
			t.Errorf("%s is there", p)
		}
	}
	if f := got["dev/null"]; f == nil || f.Type != layer.TypeChar || f.DevMajor != 1 || f.DevMinor != 3 {
		t.Errorf("dev/null: %+v", f)
	}
}

// TestMergeSparse merges layers holding sparse files in every form GNU
// tar writes: the merged tar holds their whole content.
func TestMergeSparse(t *testing.T) {
	layertest.NeedRoot(t)
	for i, l := range layertest.SparseSeeds(t) {
		t.Run(layertest.SparseFormats[i].Name, func(t *testing.T) {
			sameAsApply(t, [][]byte{layertest.Tar(layertest.File("zeros", "lower", 0o600)), l})
		})
	}
}
