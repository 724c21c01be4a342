package snapshot

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// ensureTar makes the snapshot of the uncompressed layer b on top of
// parent with driver d.
func ensureTar(t testing.TB, s *Store, d Driver, parent *Info, b []byte) *Info {
	t.Helper()
	id := digest.FromBytes(b)
	in, err := s.Ensure(context.Background(), d, parent, Layer{Digest: id, DiffID: id, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func rebuilt(t testing.TB, in *Info) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := in.Rebuild(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
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
		for _, driver := range []string{VFS, OverlayDriver} {
			t.Run(f.Name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := NewDriver(driver, s)
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
			d, err := NewDriver(VFS, s)
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
	d, err := NewDriver(OverlayDriver, s)
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
