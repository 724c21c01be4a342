package layer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/strata-oci/strata/internal/fsx"
)

// Entry types in a file list: tar's type flags, hardlinks resolved (a
// hardlink is recorded as the regular file it is, with Link naming the
// first path of the inode).
const (
	TypeReg     = '0'
	TypeDir     = '5'
	TypeSymlink = '2'
	TypeChar    = '3'
	TypeBlock   = '4'
	TypeFifo    = '6'
)

// Entry is one file of a merged tree, as the image defines it.
type Entry struct {
	// Path is slash-separated and relative to the root, without "./".
	Path string `json:"p"`
	Type byte   `json:"t"`
	// Mode holds the permission, setuid, setgid and sticky bits.
	Mode uint32 `json:"m"`
	UID  int    `json:"u"`
	GID  int    `json:"g"`
	Size int64  `json:"s,omitempty"`
	// Mtime is in nanoseconds since the epoch.
	Mtime int64 `json:"t_,omitempty"`
	// Link is a symlink's target, or for a regular file that is a
	// hardlink, the path it was linked to.
	Link     string            `json:"l,omitempty"`
	DevMajor int64             `json:"dM,omitempty"`
	DevMinor int64             `json:"dm,omitempty"`
	Xattrs   map[string][]byte `json:"x,omitempty"`
	// Placeholder is set when the tree holds an empty regular file in
	// place of this device node (rootless extraction): a diff must not
	// see a change.
	Placeholder bool `json:"ph,omitempty"`
}

// Files is a merged file list keyed by Entry.Path: the image's own view
// of every file of a tree (owners before any rootless or id-map
// translation, devices even where the tree holds placeholders).
type Files map[string]*Entry

// deleteTree drops name and everything under it.
func (f Files) deleteTree(name string) {
	if name == "." {
		for p := range f {
			if p != "." {
				delete(f, p)
			}
		}
		return
	}
	// Only a directory has entries under it: a path the list does not
	// hold has none either (Apply lists implicit directories too), and
	// scanning the whole list for every new file would be quadratic.
	if e := f[name]; e != nil && e.Type == TypeDir {
		prefix := name + "/"
		for p := range f {
			if strings.HasPrefix(p, prefix) {
				delete(f, p)
			}
		}
	}
	delete(f, name)
}

// Sorted returns the entries in path order.
func (f Files) Sorted() []*Entry {
	out := make([]*Entry, 0, len(f))
	for _, e := range f {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Clone copies the list (entries are shared: Apply replaces entries and
// never changes one in place).
func (f Files) Clone() Files {
	c := make(Files, len(f))
	for k, v := range f {
		c[k] = v
	}
	return c
}

// Usage is the apparent size and the entry count of a tree that holds
// exactly f (every name but the root counts, a hardlink's size too).
func (f Files) Usage() (size, count int64) {
	for p, e := range f {
		if p == "." {
			continue
		}
		count++
		if e.Type == TypeReg && !e.Placeholder {
			size += e.Size
		}
	}
	return size, count
}

// WriteFiles writes the list as gzip-compressed JSON lines, sorted by
// path, to path: under a temporary name, then renamed. It is not synced:
// the caller syncs it (fsx.SyncFiles) before anything depends on it.
func WriteFiles(path string, f Files) error {
	out, err := fsx.CreateAtomic(path, 0o644)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.BestSpeed)
	bw := bufio.NewWriter(zw)
	enc := json.NewEncoder(bw)
	for _, e := range f.Sorted() {
		if err = enc.Encode(e); err != nil {
			break
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		out.Discard()
		return fmt.Errorf("write file list %s: %w", path, err)
	}
	return out.Rename()
}

// ReadFiles reads a list WriteFiles wrote; a missing file is an empty
// list.
func ReadFiles(path string) (Files, error) {
	in, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Files{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return nil, fmt.Errorf("read file list %s: %w", path, err)
	}
	defer zr.Close()
	dec := json.NewDecoder(bufio.NewReader(zr))
	f := Files{}
	for {
		var e Entry
		if err := dec.Decode(&e); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read file list %s: %w", path, err)
		}
		if e.Path == "" || filepath.IsAbs(e.Path) {
			return nil, fmt.Errorf("read file list %s: bad path %q", path, e.Path)
		}
		f[e.Path] = &e
	}
	return f, nil
}
