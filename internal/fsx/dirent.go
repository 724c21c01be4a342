package fsx

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Dirent is a directory entry as getdents reports it: Type is a DT_
// constant, DT_UNKNOWN where the file system does not say.
type Dirent struct {
	Name string
	Type uint8
}

var direntBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// ReadDirents lists the open directory fd, "." and ".." left out, with
// raw getdents: an os.File would register the directory with the poller
// and switch it to blocking mode, system calls that add up over
// thousands of directories.
func ReadDirents(fd int) ([]Dirent, error) {
	buf := direntBufs.Get().(*[32 << 10]byte)
	defer direntBufs.Put(buf)
	var out []Dirent
	for {
		n, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return out, nil
		}
		// struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type,
		// then the NUL-terminated name.
		for b := buf[:n]; len(b) > 0; {
			if len(b) < 19 {
				return nil, errors.New("getdents: short record")
			}
			rec := int(binary.NativeEndian.Uint16(b[16:18]))
			if rec < 19 || rec > len(b) {
				return nil, errors.New("getdents: bad record length")
			}
			name := b[19:rec]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			if s := string(name); s != "." && s != ".." {
				out = append(out, Dirent{Name: s, Type: b[18]})
			}
			b = b[rec:]
		}
	}
}

// ReadDirNames lists the directory fd (opened for reading, or O_PATH)
// without taking ownership of fd; dir names it in errors.
func ReadDirNames(fd int, dir string) ([]string, error) {
	nfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(nfd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read directory %s: %w", dir, err)
	}
	return names, nil
}
