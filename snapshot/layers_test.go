package snapshot_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

func TestDuplicateNames(t *testing.T) {
	needRoot(t)
	for _, c := range layertest.Duplicates {
		tarball := layertest.Tar(c.Entries...)
		for _, driver := range []string{vfs.Name, overlay.Name} {
			t.Run(c.Name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := newDriver(driver, s)
				if err != nil {
					t.Fatal(err)
				}
				in := ensureTar(t, s, d, nil, tarball)
				for p, want := range c.Files {
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
				kept, _ := os.ReadDir(filepath.Join(in.Dir, layer.ShadowDir))
				if len(kept) != c.Shadowed {
					t.Errorf("%d files kept in %s, want %d", len(kept), layer.ShadowDir, c.Shadowed)
				}
				if !bytes.Equal(rebuilt(t, in), tarball) {
					t.Fatal("rebuilt layer differs from the original")
				}
				if err := in.Verify(context.Background()); err != nil {
					t.Fatal(err)
				}
				// Removing the snapshot removes what it kept aside.
				if err := bundle.Remove(s, in.ID); err != nil {
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
	for _, driver := range []string{vfs.Name, overlay.Name} {
		t.Run(driver, func(t *testing.T) {
			s := openStore(t)
			d, err := newDriver(driver, s)
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
	d, err := newDriver(vfs.Name, s)
	if err != nil {
		t.Fatal(err)
	}
	plain := ensureTar(t, s, d, nil, layertest.Tar(layertest.File("a", "only once", 0o644), layertest.Dir("d", 0o755)))
	if _, err := os.Stat(filepath.Join(plain.Dir, layer.ShadowDir)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a layer naming nothing twice has a %s directory: %v", layer.ShadowDir, err)
	}
	if err := plain.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	dup := ensureTar(t, s, d, nil, layertest.Tar(layertest.Duplicates[0].Entries...))
	if err := os.RemoveAll(filepath.Join(dup.Dir, layer.ShadowDir)); err != nil {
		t.Fatal(err)
	}
	if err := dup.Verify(context.Background()); err == nil {
		t.Fatal("verify passed without the replaced file's bytes")
	}
}

// TestRebuildOldRecord: a tarsplit.json.gz in the plain tar-split form
// (as strata wrote it before sparse maps and shadow/, and as tar-split's
// own packer writes it) still rebuilds its layer.
func TestRebuildOldRecord(t *testing.T) {
	needRoot(t)
	tarball := layertest.Tar(layertest.Dir("d", 0o755), layertest.File("d/a", "some bytes", 0o644),
		layertest.Hardlink("d/h", "d/a"), layertest.File("e", "", 0o600), layertest.Symlink("s", "d/a"))
	s := openStore(t)
	d, err := newDriver(vfs.Name, s)
	if err != nil {
		t.Fatal(err)
	}
	in := ensureTar(t, s, d, nil, tarball)
	var rec bytes.Buffer
	zw := gzip.NewWriter(&rec)
	r, err := asm.NewInputTarStream(bytes.NewReader(tarball), storage.NewJSONPacker(zw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.Dir, layer.TarSplitFile), rec.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt(t, in), tarball) {
		t.Fatal("rebuilt layer differs from the original")
	}
	if err := in.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSparseLayers: GNU tar's four sparse forms and an entry of plain
// zeros unpack with holes (both drivers), read back the same bytes and
// rebuild the exact layer.
func TestSparseLayers(t *testing.T) {
	needRoot(t)
	const size, zeroBytes = 64 << 20, 4 << 20
	src := t.TempDir()
	layertest.SparseSource(t, src, size, zeroBytes)
	want := map[string]string{"sparse": layertest.FileSum(t, filepath.Join(src, "sparse")), "zeros": layertest.FileSum(t, filepath.Join(src, "zeros"))}
	for _, f := range layertest.SparseFormats {
		tarball := layertest.GNUTar(t, src, f.Args, "sparse", "zeros")
		if int64(len(tarball)) > zeroBytes+1<<20 {
			t.Fatalf("%s: tar did not store sparse as sparse (%d bytes)", f.Name, len(tarball))
		}
		for _, driver := range []string{vfs.Name, overlay.Name} {
			t.Run(f.Name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := newDriver(driver, s)
				if err != nil {
					t.Fatal(err)
				}
				in := ensureTar(t, s, d, nil, tarball)
				for name, sum := range want {
					p := filepath.Join(in.FS(), name)
					st := lstat(t, p)
					if st.Blocks*512 > 256<<10 {
						t.Errorf("%s: %d blocks allocated for %d bytes", name, st.Blocks, st.Size)
					}
					if got := layertest.FileSum(t, p); got != sum {
						t.Errorf("%s: content differs", name)
					}
				}
				if !bytes.Equal(rebuilt(t, in), tarball) {
					t.Fatal("rebuilt layer differs from the original")
				}
				if err := in.Verify(context.Background()); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestSparseHuge: a few KiB of layer describing a 1 TiB file costs what
// its data costs: the holes are never read nor written, and the rebuild
// reads only the data regions.
func TestSparseHuge(t *testing.T) {
	needRoot(t)
	const size = 1 << 40
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "huge"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt([]byte("end"), size-3)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range layertest.SparseFormats {
		t.Run(format.Name, func(t *testing.T) {
			tarball := layertest.GNUTar(t, src, format.Args, "huge")
			s := openStore(t)
			d, err := newDriver(vfs.Name, s)
			if err != nil {
				t.Fatal(err)
			}
			in := ensureTar(t, s, d, nil, tarball)
			p := filepath.Join(in.FS(), "huge")
			st := lstat(t, p)
			if st.Size != size || st.Blocks*512 > 64<<10 {
				t.Fatalf("size %d, %d blocks", st.Size, st.Blocks)
			}
			g, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			buf := make([]byte, 3)
			if _, err := g.ReadAt(buf, size-3); err != nil || string(buf) != "end" {
				t.Fatalf("last bytes %q (%v)", buf, err)
			}
			if !bytes.Equal(rebuilt(t, in), tarball) {
				t.Fatal("rebuilt layer differs from the original")
			}
		})
	}
}

// TestSparseCopyUp: an overlay layer linking to a sparse file of a lower
// layer copies it up with its holes.
func TestSparseCopyUp(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	layertest.SparseSource(t, src, 32<<20, 0)
	s := openStore(t)
	d, err := newDriver(overlay.Name, s)
	if err != nil {
		t.Fatal(err)
	}
	base := ensureTar(t, s, d, nil, layertest.GNUTar(t, src, []string{"--format=pax"}, "sparse"))
	top := ensureTar(t, s, d, base, layertest.Tar(layertest.Hardlink("link", "sparse")))
	for _, name := range []string{"sparse", "link"} {
		p := filepath.Join(top.FS(), name)
		if st := lstat(t, p); st.Blocks*512 > 256<<10 || st.Nlink != 2 {
			t.Errorf("%s: %d blocks, %d links", name, st.Blocks, st.Nlink)
		}
		if layertest.FileSum(t, p) != layertest.FileSum(t, filepath.Join(src, "sparse")) {
			t.Errorf("%s: content differs", name)
		}
	}
	if err := top.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
}
