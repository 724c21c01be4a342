package layer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// TestCacheDropper: every file handed over is closed by stop, small ones
// at once, and what was written stays readable byte for byte.
func TestCacheDropper(t *testing.T) {
	dir := t.TempDir()
	c := newCacheDropper()
	sizes := []int{0, 100, dropMin - 1, dropMin, 3 * dropMin, 1 << 20}
	var fds []int
	for i := 0; i < 3*dropBatch; i++ {
		size := sizes[i%len(sizes)]
		p := filepath.Join(dir, "f"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fsx.FdWriter(fd).Write(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
			t.Fatal(err)
		}
		if err := c.closeFile(fd, int64(size)); err != nil {
			t.Fatal(err)
		}
		if size < dropMin {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
				t.Fatalf("file of %d bytes: descriptor still open after closeFile", size)
			}
		} else {
			fds = append(fds, fd)
		}
		defer func(p string, i, size int) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Error(err)
			} else if !bytes.Equal(b, bytes.Repeat([]byte{byte(i)}, size)) {
				t.Errorf("%s: content changed", p)
			}
		}(p, i, size)
	}
	c.stop()
	c.stop() // twice is fine
	for _, fd := range fds {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != unix.EBADF {
			t.Fatalf("descriptor %d still open after stop", fd)
		}
	}
	// A nil dropper (DropCache unset) just closes.
	var none *cacheDropper
	fd, err := unix.Open(filepath.Join(dir, "plain"), unix.O_WRONLY|unix.O_CREAT, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := none.closeFile(fd, 1<<20); err != nil {
		t.Fatal(err)
	}
	none.stop()
}
