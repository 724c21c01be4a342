package layer

import (
	"sync"

	"golang.org/x/sys/unix"
)

// cacheDropper gives back the page cache of files written into a vfs
// snapshot, on a goroutine of its own: it starts their writeback, waits
// for it and drops their pages. A vfs snapshot is a second copy of what
// the bundle's rootfs holds, read again only to make another rootfs or
// to rebuild the layer; kept in the cache it would double the memory an
// unpack takes from the page cache, and every later write would need
// pages nobody has used (on a virtual machine, the costliest kind).
// Given back, its pages serve the rootfs and the next files.
//
// Dropping is advice: an error leaves the pages cached, and the data is
// written back as it would have been. The extractor never waits for it:
// when the queue is full, the file is closed as before.
type cacheDropper struct {
	fds  chan int
	done chan struct{}
	once sync.Once
}

// dropBatch is how many files the dropper starts writing back before it
// waits for the first of them: the disk works on many at once.
const dropBatch = 64

// dropMin is the smallest file worth three system calls: below a few
// pages the cache it holds is not worth the calls.
const dropMin = 16 << 10

// dropQueue bounds the descriptors the dropper holds: four batches keep
// the disk busy, and a process's descriptor limit may be as low as 1024.
const dropQueue = 4 * dropBatch

func newCacheDropper() *cacheDropper {
	c := &cacheDropper{fds: make(chan int, dropQueue), done: make(chan struct{})}
	go c.run()
	return c
}

// closeFile closes fd, a file just written with size bytes, or hands it
// to the dropper, which closes it once its pages are given back.
func (c *cacheDropper) closeFile(fd int, size int64) error {
	if c != nil && size >= dropMin {
		select {
		case c.fds <- fd:
			return nil
		default:
		}
	}
	return unix.Close(fd)
}

func (c *cacheDropper) run() {
	defer close(c.done)
	batch := make([]int, 0, dropBatch)
	for fd := range c.fds {
		batch = append(batch[:0], fd)
		unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	fill:
		for len(batch) < dropBatch {
			select {
			case fd, ok := <-c.fds:
				if !ok {
					break fill
				}
				batch = append(batch, fd)
				unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			default:
				break fill
			}
		}
		for _, fd := range batch {
			// DONTNEED drops clean pages only: wait for the writeback
			// started above.
			if unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER) == nil {
				unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
			}
			unix.Close(fd)
		}
	}
}

// stop waits until every file handed over is closed.
func (c *cacheDropper) stop() {
	if c == nil {
		return
	}
	c.once.Do(func() { close(c.fds) })
	<-c.done
}
