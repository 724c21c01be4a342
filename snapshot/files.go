package snapshot

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
)

// Files is a merged file list keyed by Entry.Path.
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

// WriteFiles writes the list as gzip-compressed JSON lines to path,
// atomically.
func WriteFiles(path string, f Files) error { return writeFiles(path, f, true) }

// writeFiles is WriteFiles; without sync the file is not synced before
// its rename (the caller syncs it later).
func writeFiles(path string, f Files, sync bool) error {
	tmp := path + ".tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
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
	if err == nil && sync {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write file list %s: %w", path, err)
	}
	return nil
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

// ReadFiles reads the snapshot's merged file list.
func (i *Info) ReadFiles() (Files, error) { return ReadFiles(filepath.Join(i.Dir, FilesFile)) }
