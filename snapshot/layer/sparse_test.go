package layer

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layertest"
	tstar "github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"
)

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
	layertest.SparseSource(t, dir, 16<<20, 1<<20)
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
		if layertest.FileSum(t, dp) != layertest.FileSum(t, filepath.Join(dir, name)) {
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
	layertest.SparseSource(t, src, 1<<20, 10)
	rec := extractTar(t, layertest.GNUTar(t, src, []string{"--format=gnu"}, "sparse", "zeros"))
	f, err := os.Open(filepath.Join(rec, TarSplitFile))
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

// FuzzRebuild: whatever layer applies, its snapshot rebuilds it byte for
// byte (names given twice, directories replacing files, files written
// through symlinks, sparse entries).
func FuzzRebuild(f *testing.F) {
	for _, s := range layertest.SparseSeeds(f) {
		f.Add(s)
	}
	for _, c := range layertest.Duplicates {
		f.Add(layertest.Tar(c.Entries...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		fsDir := filepath.Join(dir, "fs")
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var ts bytes.Buffer
		zw := gzip.NewWriter(&ts)
		err := applyRecording(context.Background(), fsDir, bytes.NewReader(data), ApplyOptions{Rootless: os.Geteuid() != 0}, Files{}, newPacker(zw), filepath.Join(dir, ShadowDir))
		if err != nil {
			return
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, TarSplitFile), ts.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Rebuild(&out, fsDir, dir); err != nil {
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
	for _, s := range layertest.SparseSeeds(f) {
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

// extractTar extracts the uncompressed layer b as a snapshot does
// (Extract, recording) into a new directory and returns the directory
// holding the record; the files are in its "fs".
func extractTar(t testing.TB, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	fsDir := filepath.Join(dir, "fs")
	must(t, os.Mkdir(fsDir, 0o755))
	s, err := NewStream(bytes.NewReader(b), digest.FromBytes(b))
	must(t, err)
	must(t, Extract(context.Background(), fsDir, dir, s, ApplyOptions{}, Files{}))
	return dir
}
