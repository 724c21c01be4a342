package snapshot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// duplicateCases are layers that name a path more than once, or remove
// in the same layer a file they wrote: the later entry wins, and the
// snapshot still rebuilds the layer.
var duplicateCases = []struct {
	name    string
	entries []layertest.Entry
	// files maps paths to their content ("/" for a directory, "-" for
	// gone) after extraction.
	files map[string]string
	// shadowed counts the files kept aside for the rebuild.
	shadowed int
}{
	{
		name:     "file twice",
		entries:  []layertest.Entry{layertest.File("a", "first", 0o644), layertest.File("a", "second!", 0o600)},
		files:    map[string]string{"a": "second!"},
		shadowed: 1,
	},
	{
		name:     "file then directory",
		entries:  []layertest.Entry{layertest.File("a", "first", 0o644), layertest.Dir("a/", 0o755), layertest.File("a/in", "inside", 0o644)},
		files:    map[string]string{"a": "/", "a/in": "inside"},
		shadowed: 1,
	},
	{
		name:     "file in a directory, then the directory as a file",
		entries:  []layertest.Entry{layertest.File("d/x", "inner", 0o644), layertest.File("d/sub/y", "deeper", 0o644), layertest.File("d", "now a file", 0o644)},
		files:    map[string]string{"d": "now a file", "d/x": "-"},
		shadowed: 2,
	},
	{
		name:     "whiteout after the file",
		entries:  []layertest.Entry{layertest.File("a", "first", 0o644), layertest.Whiteout("a")},
		files:    map[string]string{"a": "first"},
		shadowed: 0,
	},
	{
		name:     "whiteout of a directory holding this layer's file",
		entries:  []layertest.Entry{layertest.File("d/x", "inner", 0o644), layertest.Whiteout("d"), layertest.Opaque("d")},
		files:    map[string]string{"d": "/", "d/x": "inner"},
		shadowed: 0,
	},
	{
		name: "hard links to a name given twice",
		entries: []layertest.Entry{
			layertest.File("a", "first", 0o644), layertest.Hardlink("l", "a"),
			layertest.File("a", "second!", 0o644), layertest.Hardlink("m", "a"),
		},
		files:    map[string]string{"a": "second!", "l": "first", "m": "second!"},
		shadowed: 1,
	},
	{
		name: "a file written through a symlink the layer then points elsewhere, then replaced",
		entries: []layertest.Entry{
			layertest.Dir("d", 0o755), layertest.Dir("e", 0o755), layertest.Symlink("s", "d"),
			layertest.File("s/f", "one", 0o644), layertest.File("d/g", "gee", 0o644), layertest.Symlink("s", "/e"),
			layertest.File("e/f", "other", 0o644), layertest.File("s/g", "not gee", 0o644), layertest.File("d/f", "two", 0o644),
		},
		files: map[string]string{"d/f": "two", "e/f": "other", "d/g": "gee", "e/g": "not gee"},
		// s/f's file, and where s/g's is.
		shadowed: 2,
	},
	{
		name:     "symlink replacing a file, empty file twice",
		entries:  []layertest.Entry{layertest.File("a", "first", 0o644), layertest.Symlink("a", "b"), layertest.File("e", "", 0o644), layertest.File("e", "", 0o644)},
		files:    map[string]string{"e": ""},
		shadowed: 1,
	},
}

func TestDuplicateNames(t *testing.T) {
	needRoot(t)
	for _, c := range duplicateCases {
		layer := layertest.Tar(c.entries...)
		for _, driver := range []string{VFS, OverlayDriver} {
			t.Run(c.name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := NewDriver(driver, s)
				if err != nil {
					t.Fatal(err)
				}
				in := ensureTar(t, s, d, nil, layer)
				for p, want := range c.files {
					full := filepath.Join(in.FS(), p)
					switch want {
					case "-":
						if _, err := os.Lstat(full); err == nil {
							t.Errorf("%s: still there", p)
						}
					case "/":
						if st, err := os.Lstat(full); err != nil || !st.IsDir() {
							t.Errorf("%s: not a directory (%v)", p, err)
						}
					default:
						if b, err := os.ReadFile(full); err != nil || string(b) != want {
							t.Errorf("%s: %q (%v), want %q", p, b, err, want)
						}
					}
				}
				kept, _ := os.ReadDir(filepath.Join(in.Dir, ShadowDir))
				if len(kept) != c.shadowed {
					t.Errorf("%d files kept in %s, want %d", len(kept), ShadowDir, c.shadowed)
				}
				if !bytes.Equal(rebuilt(t, in), layer) {
					t.Fatal("rebuilt layer differs from the original")
				}
				if err := in.Verify(); err != nil {
					t.Fatal(err)
				}
				// Removing the snapshot removes what it kept aside.
				if err := s.Remove(in.ID); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(in.Dir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("snapshot directory left after removal: %v", err)
				}
			})
		}
	}
}

// TestDuplicateOnLowerLayer: a layer that names twice a path its parent
// holds, and replaces a parent's directory holding its own new file.
func TestDuplicateOnLowerLayer(t *testing.T) {
	needRoot(t)
	base := layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/y", "lower y", 0o644), layertest.File("a", "lower a", 0o644))
	top := layertest.Tar(
		layertest.File("a", "upper a 1", 0o644), layertest.File("a", "upper a 2", 0o644),
		layertest.File("d/x", "upper x", 0o644), layertest.Symlink("d", "/a"),
	)
	for _, driver := range []string{VFS, OverlayDriver} {
		t.Run(driver, func(t *testing.T) {
			s := openStore(t)
			d, err := NewDriver(driver, s)
			if err != nil {
				t.Fatal(err)
			}
			in := ensureTar(t, s, d, ensureTar(t, s, d, nil, base), top)
			if b, _ := os.ReadFile(filepath.Join(in.FS(), "a")); string(b) != "upper a 2" {
				t.Errorf("a: %q", b)
			}
			if l, _ := os.Readlink(filepath.Join(in.FS(), "d")); l != "/a" {
				t.Errorf("d: %q", l)
			}
			if !bytes.Equal(rebuilt(t, in), top) {
				t.Fatal("rebuilt layer differs from the original")
			}
		})
	}
}

// TestVerifyWithoutShadow: snapshots made before shadow/ existed (none
// there) still verify, and a snapshot whose kept files are gone fails
// verification instead of rebuilding something else.
func TestVerifyWithoutShadow(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	d, err := NewDriver(VFS, s)
	if err != nil {
		t.Fatal(err)
	}
	plain := ensureTar(t, s, d, nil, layertest.Tar(layertest.File("a", "only once", 0o644), layertest.Dir("d", 0o755)))
	if _, err := os.Stat(filepath.Join(plain.Dir, ShadowDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a layer naming nothing twice has a %s directory: %v", ShadowDir, err)
	}
	if err := plain.Verify(); err != nil {
		t.Fatal(err)
	}
	dup := ensureTar(t, s, d, nil, layertest.Tar(duplicateCases[0].entries...))
	if err := os.RemoveAll(filepath.Join(dup.Dir, ShadowDir)); err != nil {
		t.Fatal(err)
	}
	if err := dup.Verify(); err == nil {
		t.Fatal("verify passed without the replaced file's bytes")
	}
}

// TestRebuildOldRecord: a tarsplit.json.gz in the plain tar-split form
// (as strata wrote it before sparse maps and shadow/, and as tar-split's
// own packer writes it) still rebuilds its layer.
func TestRebuildOldRecord(t *testing.T) {
	needRoot(t)
	layer := layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/a", "some bytes", 0o644),
		layertest.Hardlink("d/h", "d/a"), layertest.File("e", "", 0o600), layertest.Symlink("s", "d/a"))
	s := openStore(t)
	d, err := NewDriver(VFS, s)
	if err != nil {
		t.Fatal(err)
	}
	in := ensureTar(t, s, d, nil, layer)
	var rec bytes.Buffer
	zw := gzip.NewWriter(&rec)
	r, err := asm.NewInputTarStream(bytes.NewReader(layer), storage.NewJSONPacker(zw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.Dir, TarSplitFile), rec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt(t, in), layer) {
		t.Fatal("rebuilt layer differs from the original")
	}
	if err := in.Verify(); err != nil {
		t.Fatal(err)
	}
}
