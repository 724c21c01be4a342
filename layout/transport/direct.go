package transport

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// directBlock is the size of the writes a directWriter hands the kernel.
const directBlock = 1 << 20

// directWriter writes a new file (an archive being saved) in aligned
// blocks with O_DIRECT where the file system takes it, from a few
// buffers it reuses, on a goroutine of its own. An archive is written
// once and read by another program later: through the page cache it
// would take as many new pages as it has bytes, which costs more than the
// copy itself where pages are expensive to come by (a virtual machine
// whose host reclaims free memory), and it would still be written back
// before the fsync that makes the save durable. Where O_DIRECT is refused
// (tmpfs, some FUSE file systems) the blocks are written as usual.
type directWriter struct {
	f      *os.File
	flags  int
	direct bool
	cur    []byte        // block being filled
	free   chan []byte   // blocks to fill
	full   chan []byte   // blocks to write
	done   chan struct{} // closed when the goroutine has stopped
	closed bool

	mu  sync.Mutex
	err error // the first write error
}

func newDirectWriter(f *os.File) *directWriter {
	w := &directWriter{f: f, free: make(chan []byte, 3), full: make(chan []byte, 3), done: make(chan struct{})}
	if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err == nil {
		w.flags = fl
		_, err := unix.FcntlInt(f.Fd(), unix.F_SETFL, fl|unix.O_DIRECT)
		w.direct = err == nil
	}
	for range cap(w.free) {
		w.free <- alignedBlock()[:0]
	}
	go w.run()
	return w
}

// alignedBlock returns directBlock bytes starting on a page boundary, as
// O_DIRECT needs.
func alignedBlock() []byte {
	const page = 4096
	b := make([]byte, directBlock+page)
	off := int(uintptr(unsafe.Pointer(&b[0])) & (page - 1))
	if off != 0 {
		off = page - off
	}
	return b[off : off+directBlock : off+directBlock]
}

func (w *directWriter) run() {
	defer close(w.done)
	for b := range w.full {
		if w.failed() == nil {
			if err := w.writeBlock(b); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
		}
		w.free <- b[:0]
	}
}

func (w *directWriter) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// writeBlock writes b at the file's offset: its whole 4 KiB blocks
// directly, a shorter tail (only the file's last block) through the page
// cache.
func (w *directWriter) writeBlock(b []byte) error {
	if w.direct {
		whole := len(b) &^ 4095
		if whole > 0 {
			n, err := w.f.Write(b[:whole])
			b = b[n:]
			if errors.Is(err, unix.EINVAL) {
				// The file system takes the flag but not these
				// writes (alignment rules differ): go on without.
				err = w.plain()
			}
			if err != nil {
				return err
			}
		}
		if len(b) > 0 && w.direct {
			if err := w.plain(); err != nil {
				return err
			}
		}
	}
	if len(b) == 0 {
		return nil
	}
	_, err := w.f.Write(b)
	return err
}

// plain turns O_DIRECT off.
func (w *directWriter) plain() error {
	if _, err := unix.FcntlInt(w.f.Fd(), unix.F_SETFL, w.flags); err != nil {
		return fmt.Errorf("fcntl: %w", err)
	}
	w.direct = false
	return nil
}

func (w *directWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, os.ErrClosed
	}
	n := 0
	for len(p) > 0 {
		if w.cur == nil {
			if err := w.failed(); err != nil {
				return n, err
			}
			w.cur = <-w.free
		}
		c := copy(w.cur[len(w.cur):cap(w.cur)], p)
		w.cur = w.cur[:len(w.cur)+c]
		p, n = p[c:], n+c
		if len(w.cur) == cap(w.cur) {
			w.full <- w.cur
			w.cur = nil
		}
	}
	return n, nil
}

// Close writes what is buffered and waits for the writes to finish; it
// does not close the file.
func (w *directWriter) Close() error {
	if !w.closed {
		w.closed = true
		if len(w.cur) > 0 {
			w.full <- w.cur
		}
		w.cur = nil
		close(w.full)
		<-w.done
	}
	return w.failed()
}
