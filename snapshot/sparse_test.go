package snapshot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	tstar "github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// sparseSource writes, in dir, "sparse" (size bytes, a few bytes of data
// at its start, middle and end, holes between) and "zeros" (zeroBytes of
// allocated zeros, which GNU tar stores in full).
func sparseSource(t testing.TB, dir string, size, zeroBytes int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		off  int64
		data string
	}{{0, "head"}, {size/3 + 5, "middle"}, {size - 4, "tail"}} {
		if _, err := f.WriteAt([]byte(w.data), w.off); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "zeros"), make([]byte, zeroBytes), 0o644); err != nil {
		t.Fatal(err)
	}
}

// gnuTar archives the names in dir with GNU tar --sparse and args.
func gnuTar(t testing.TB, dir string, args []string, names ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("tar"); err != nil {
		t.Fatalf("GNU tar is required by this test: %v", err)
	}
	cmd := exec.Command("tar", append(append([]string{"-C", dir, "--sparse", "--numeric-owner", "-cf", "-"}, args...), names...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tar %v: %v: %s", args, err, stderr.String())
	}
	return out.Bytes()
}

// sparseFormats are the ways GNU tar stores a sparse file.
var sparseFormats = []struct {
	name string
	args []string
}{
	{"gnu", []string{"--format=gnu"}},
	{"pax-0.0", []string{"--format=pax", "--sparse-version=0.0"}},
	{"pax-0.1", []string{"--format=pax", "--sparse-version=0.1"}},
	{"pax-1.0", []string{"--format=pax", "--sparse-version=1.0"}},
}

func fileSum(t testing.TB, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// ensureTar makes the snapshot of the uncompressed layer b on top of
// parent with driver d.
func ensureTar(t testing.TB, s *Store, d Driver, parent *Info, b []byte) *Info {
	t.Helper()
	id := digest.FromBytes(b)
	in, err := s.Ensure(d, parent, Layer{Digest: id, DiffID: id, Open: func() (io.ReadCloser, error) {
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
	sparseSource(t, src, size, zeroBytes)
	want := map[string]string{"sparse": fileSum(t, filepath.Join(src, "sparse")), "zeros": fileSum(t, filepath.Join(src, "zeros"))}
	for _, f := range sparseFormats {
		layer := gnuTar(t, src, f.args, "sparse", "zeros")
		if int64(len(layer)) > zeroBytes+1<<20 {
			t.Fatalf("%s: tar did not store sparse as sparse (%d bytes)", f.name, len(layer))
		}
		for _, driver := range []string{VFS, OverlayDriver} {
			t.Run(f.name+"/"+driver, func(t *testing.T) {
				s := openStore(t)
				d, err := NewDriver(driver, s)
				if err != nil {
					t.Fatal(err)
				}
				in := ensureTar(t, s, d, nil, layer)
				for name, sum := range want {
					p := filepath.Join(in.FS(), name)
					st := lstat(t, p)
					if st.Blocks*512 > 256<<10 {
						t.Errorf("%s: %d blocks allocated for %d bytes", name, st.Blocks, st.Size)
					}
					if got := fileSum(t, p); got != sum {
						t.Errorf("%s: content differs", name)
					}
				}
				if !bytes.Equal(rebuilt(t, in), layer) {
					t.Fatal("rebuilt layer differs from the original")
				}
				if err := in.Verify(); err != nil {
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
	for _, format := range sparseFormats {
		t.Run(format.name, func(t *testing.T) {
			layer := gnuTar(t, src, format.args, "huge")
			s := openStore(t)
			d, err := NewDriver(VFS, s)
			if err != nil {
				t.Fatal(err)
			}
			in := ensureTar(t, s, d, nil, layer)
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
			if !bytes.Equal(rebuilt(t, in), layer) {
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
	sparseSource(t, src, 32<<20, 0)
	s := openStore(t)
	d, err := NewDriver(OverlayDriver, s)
	if err != nil {
		t.Fatal(err)
	}
	base := ensureTar(t, s, d, nil, gnuTar(t, src, []string{"--format=pax"}, "sparse"))
	top := ensureTar(t, s, d, base, layertest.Tar(layertest.Hardlink("link", "sparse")))
	for _, name := range []string{"sparse", "link"} {
		p := filepath.Join(top.FS(), name)
		if st := lstat(t, p); st.Blocks*512 > 256<<10 || st.Nlink != 2 {
			t.Errorf("%s: %d blocks, %d links", name, st.Blocks, st.Nlink)
		}
		if fileSum(t, p) != fileSum(t, filepath.Join(src, "sparse")) {
			t.Errorf("%s: content differs", name)
		}
	}
	if err := top.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestWriteHoley: data blocks are written, whole zero blocks are holes,
// and the bytes read back are the input's.
func TestWriteHoley(t *testing.T) {
	const blk = 4096
	data := func(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name      string
		in        []byte
		maxBlocks int64 // allocated 4 KiB blocks at most
	}{
		{"empty", nil, 0},
		{"zeros", make([]byte, 1<<20), 0},
		{"data", data(300 << 10), 75},
		{"hole between", cat(data(10), make([]byte, 1<<20), data(10)), 2},
		{"unaligned data", cat(make([]byte, 1<<20+1), data(1)), 1},
		{"trailing hole", cat(data(blk), make([]byte, 1<<20+100)), 1},
		{"zero tail in a data block", cat(make([]byte, 1<<20), data(1), make([]byte, 100)), 1},
		{"almost zero", cat(make([]byte, 200<<10), []byte{1}, make([]byte, 200<<10)), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			fd, err := unix.Open(p, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			n, err := writeHoley(fd, bytes.NewReader(tc.in), 0, make([]byte, 128<<10), blk)
			if err == nil {
				err = unix.Ftruncate(fd, n)
			}
			if err != nil || n != int64(len(tc.in)) {
				t.Fatalf("wrote %d of %d: %v", n, len(tc.in), err)
			}
			unix.Fsync(fd)
			got, err := os.ReadFile(p)
			if err != nil || !bytes.Equal(got, tc.in) {
				t.Fatalf("read back %d bytes (%v), differ", len(got), err)
			}
			if st := lstat(t, p); st.Blocks*512 > tc.maxBlocks*blk {
				t.Errorf("%d blocks of 512 allocated, want at most %d of 4096", st.Blocks, tc.maxBlocks)
			}
		})
	}
}

// TestCopyHoley: copies keep holes and bytes.
func TestCopyHoley(t *testing.T) {
	dir := t.TempDir()
	sparseSource(t, dir, 16<<20, 1<<20)
	for _, name := range []string{"sparse", "zeros"} {
		src, err := unix.Open(filepath.Join(dir, name), unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		dp := filepath.Join(dir, name+".copy")
		dst, err := unix.Open(dp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		err = copyHoley(dst, src, make([]byte, 128<<10))
		unix.Close(src)
		unix.Close(dst)
		if err != nil {
			t.Fatal(err)
		}
		if fileSum(t, dp) != fileSum(t, filepath.Join(dir, name)) {
			t.Errorf("%s: copy differs", name)
		}
		if st := lstat(t, dp); st.Blocks*512 > 64<<10 {
			t.Errorf("%s: copy has %d blocks", name, st.Blocks)
		}
	}
}

// TestSparseMapRecorded: the tar-split record of a sparse entry holds its
// data regions, and the record of a plain file has none (the format of
// snapshots made before sparse support).
func TestSparseMapRecorded(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	sparseSource(t, src, 1<<20, 10)
	s := openStore(t)
	d, err := NewDriver(VFS, s)
	if err != nil {
		t.Fatal(err)
	}
	in := ensureTar(t, s, d, nil, gnuTar(t, src, []string{"--format=gnu"}, "sparse", "zeros"))
	f, err := os.Open(filepath.Join(in.Dir, TarSplitFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]record{}
	dec := json.NewDecoder(zr)
	for dec.More() {
		var r record
		if err := dec.Decode(&r); err != nil {
			t.Fatal(err)
		}
		if r.Name != "" {
			recs[r.Name] = r
		}
	}
	if r := recs["zeros"]; r.Size != 10 || r.Sparse != nil {
		t.Errorf("zeros: size %d, map %v", r.Size, r.Sparse)
	}
	r := recs["sparse"]
	var sum int64
	for _, f := range r.Sparse {
		sum += f[1]
	}
	// Three runs of data (GNU tar finds them in its own block size) and
	// the zero-length region GNU tar ends every map with.
	if len(r.Sparse) != 4 || r.Sparse[0][0] != 0 || r.Sparse[3] != (fragment{1 << 20, 0}) || sum != r.Size {
		t.Errorf("sparse: size %d, map %v", r.Size, r.Sparse)
	}
}

// sparseSeeds are small layers in every sparse form, for the fuzzers.
func sparseSeeds(t testing.TB) [][]byte {
	dir := t.TempDir()
	sparseSource(t, dir, 64<<10, 3)
	var out [][]byte
	for _, f := range sparseFormats {
		out = append(out, gnuTar(t, dir, f.args, "sparse", "zeros"))
	}
	return out
}

// FuzzRebuild: whatever layer applies, its snapshot rebuilds it byte for
// byte (names given twice, directories replacing files, files written
// through symlinks, sparse entries).
func FuzzRebuild(f *testing.F) {
	for _, s := range sparseSeeds(f) {
		f.Add(s)
	}
	for _, c := range duplicateCases {
		f.Add(layertest.Tar(c.entries...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		fsDir := filepath.Join(dir, FSDir)
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var ts bytes.Buffer
		zw := gzip.NewWriter(&ts)
		err := applyRecording(fsDir, bytes.NewReader(data), ApplyOptions{Rootless: os.Geteuid() != 0}, Files{}, newPacker(zw), filepath.Join(dir, ShadowDir))
		if err != nil {
			return
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, TarSplitFile), ts.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		in := &Info{ID: "fuzz", Dir: dir}
		var out bytes.Buffer
		if err := in.Rebuild(&out); err != nil {
			t.Fatalf("applied, but does not rebuild: %v", err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("rebuilt %d bytes, differ from the %d applied", out.Len(), len(data))
		}
		_ = fsx.RemoveAll(dir)
	})
}

// FuzzSparseFragments: reading a map back from any raw header bytes
// fails cleanly or succeeds, never panics.
func FuzzSparseFragments(f *testing.F) {
	for _, s := range sparseSeeds(f) {
		f.Add(s[:min(len(s), 4096)], true, "")
	}
	f.Add(make([]byte, 1024), false, "0,1,5,2")
	f.Add([]byte("3\n0\n1\n"), false, "")
	f.Fuzz(func(t *testing.T, head []byte, gnu bool, pmap string) {
		h := &tstar.Header{Typeflag: tstar.TypeReg, PAXRecords: map[string]string{paxSparseMap: pmap}}
		if gnu {
			h.Typeflag = tstar.TypeGNUSparse
		}
		_, _, _ = sparseFragments(h, head, len(head)%600)
		h.PAXRecords = map[string]string{paxSparseMajor: "1", paxSparseMinor: "0"}
		_, _, _ = sparseFragments(h, head, 0)
		_, _ = pax10Map(head)
		if len(head) >= 512 {
			_, _ = oldGNUMap(head[:512], head[512:])
		}
	})
}
