package snapshot

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"

	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

func TestDuplicateNames(t *testing.T) {
	needRoot(t)
	for _, c := range layertest.Duplicates {
		tarball := layertest.Tar(c.Entries...)
		for _, driver := range []string{VFS, OverlayDriver} {
			t.Run(c.Name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := NewDriver(driver, s)
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
	d, err := NewDriver(VFS, s)
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
