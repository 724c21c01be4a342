package transport

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// TestDirectWriter: what goes in comes out, whatever the size and however
// it is split into writes, with O_DIRECT (ext4 under t.TempDir here) and
// where the file system refuses it (tmpfs).
func TestDirectWriter(t *testing.T) {
	dirs := map[string]string{"tempdir": t.TempDir()}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "strata-direct-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs["shm"] = d
	}
	sizes := []int{0, 1, 511, 4095, 4096, 4097, directBlock - 1, directBlock, directBlock + 1, 3*directBlock + 12345, 9 * directBlock}
	rng := rand.New(rand.NewPCG(1, 2))
	for name, dir := range dirs {
		for _, size := range sizes {
			want := make([]byte, size)
			for i := range want {
				want[i] = byte(rng.Uint32())
			}
			p := filepath.Join(dir, "f")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			w := newDirectWriter(f)
			for rest := want; len(rest) > 0; {
				n := min(len(rest), 1+rng.IntN(300000))
				if m, err := w.Write(rest[:n]); err != nil || m != n {
					t.Fatalf("%s, %d bytes: write: %d, %v", name, size, m, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatalf("%s, %d bytes: close: %v", name, size, err)
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, os.ErrClosed) {
				t.Errorf("%s: write after close: %v", name, err)
			}
			f.Close()
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, %d bytes: read back %d bytes, not what was written", name, size, len(got))
			}
		}
	}
}

// TestDirectWriterError: a failing write is reported, by a later Write
// or at the latest by Close.
func TestDirectWriterError(t *testing.T) {
	f, err := os.Open(t.TempDir()) // a directory: every write fails
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := newDirectWriter(f)
	var werr error
	for i := 0; i < 8 && werr == nil; i++ {
		_, werr = w.Write(make([]byte, directBlock))
	}
	if cerr := w.Close(); cerr == nil {
		t.Fatal("Close reported no error for writes to a directory")
	}
}
