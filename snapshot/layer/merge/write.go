package merge

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/strata-oci/strata/snapshot/layer"
)

// WriteOptions tune WriteTar.
type WriteOptions struct {
	// TempDir is where the spool file goes (the system's temporary
	// directory when empty): content read before its turn in the output
	// (a layer not in tree order, a hardlink whose first name in tree
	// order is another layer's), beyond the few MiB kept in memory. The
	// file is unlinked as soon as it is made.
	TempDir string
}

// planned is one name of the output, in order.
type planned struct {
	n    *node
	path string
}

// plan lists the tree's names in tree order (depth first, a directory
// before its entries, entries by name in byte order), the root first
// when a layer lists it, and gives each inode the first of its names.
func (t *Tree) plan() []planned {
	out := make([]planned, 0, t.count)
	var walk func(n *node, p string)
	walk = func(n *node, p string) {
		for _, k := range n.sortedKids() {
			kp := k.name
			if p != "." {
				kp = p + "/" + k.name
			}
			out = append(out, planned{k, kp})
			if k.isDir() {
				walk(k, kp)
			}
		}
	}
	if t.root.layer >= 0 {
		out = append(out, planned{t.root, "."})
	}
	walk(t.root, ".")
	for _, e := range out {
		e.n.ino.firstPath = ""
	}
	for _, e := range out {
		if e.n.ino.firstPath == "" {
			e.n.ino.firstPath = e.path
		}
	}
	return out
}

// need is a layer entry whose content the output takes.
type need struct {
	entry int
	size  int64
}

// WriteTar writes the tree as one uncompressed PAX tar to w: every name
// in tree order (the root as "./" when a layer lists it), owners as
// numbers without names, xattrs as SCHILY.xattr records, mtimes to the
// nanosecond, no atime or ctime; a file with several names is written
// under the first in tree order and the others are hardlinks to it. The
// same tree always gives the same bytes.
//
// Contents are streamed from the layers, each opened again (only those
// holding content the output takes), all at once, and read to their end
// so that their blobs are verified. A cancelled ctx stops it with ctx's
// error.
func (t *Tree) WriteTar(ctx context.Context, w io.Writer, o WriteOptions) error {
	out := t.plan()
	needs := map[int][]need{}
	for _, e := range out {
		ino := e.n.ino
		if ino.typ == layer.TypeReg && ino.firstPath == e.path && ino.size > 0 && ino.src.open == nil {
			needs[ino.src.layer] = append(needs[ino.src.layer], need{ino.src.entry, ino.size})
		}
	}
	buf := make([]byte, copyBuf)
	r := &reader{t: t, ctx: ctx, cursors: map[int]*cursor{}, sp: &spool{dir: o.TempDir, buf: buf}, buf: buf}
	defer r.close()
	for l, ns := range needs {
		sort.Slice(ns, func(i, j int) bool { return ns[i].entry < ns[j].entry })
		r.cursors[l] = &cursor{needs: ns}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	tw := tar.NewWriter(bw)
	for i, e := range out {
		if i&255 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		h := header(e.n, e.path)
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("write %s: %w", e.path, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if err := r.content(tw, e.n.ino, e.path); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return r.finish()
}

// header is the tar header of n, at path p.
func header(n *node, p string) *tar.Header {
	ino := n.ino
	h := &tar.Header{
		Name: p, Mode: int64(ino.mode), Uid: ino.uid, Gid: ino.gid,
		ModTime: time.Unix(0, ino.mtime), Format: tar.FormatPAX,
	}
	if len(ino.xattrs) > 0 {
		h.PAXRecords = make(map[string]string, len(ino.xattrs))
		for k, v := range ino.xattrs {
			h.PAXRecords[paxXattr+k] = string(v)
		}
	}
	if ino.firstPath != p {
		h.Typeflag, h.Linkname = tar.TypeLink, ino.firstPath
		return h
	}
	switch ino.typ {
	case layer.TypeReg:
		h.Typeflag, h.Size = tar.TypeReg, ino.size
	case layer.TypeDir:
		h.Typeflag = tar.TypeDir
		if p == "." {
			h.Name = "./"
		} else {
			h.Name = p + "/"
		}
	case layer.TypeSymlink:
		h.Typeflag, h.Linkname = tar.TypeSymlink, ino.link
	case layer.TypeChar:
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, ino.devMajor, ino.devMinor
	case layer.TypeBlock:
		h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, ino.devMajor, ino.devMinor
	case layer.TypeFifo:
		h.Typeflag = tar.TypeFifo
	}
	return h
}

// reader serves the contents of a tree's files from its layers.
type reader struct {
	t       *Tree
	ctx     context.Context
	cursors map[int]*cursor
	sp      *spool
	// buf is the one copy buffer: io.Copy would make one a file.
	buf []byte
}

// copyBuf is the size of the copy buffer.
const copyBuf = 256 << 10

// cursor is a layer being read in order for the contents the output
// takes from it.
type cursor struct {
	s  *stream
	tr *tar.Reader
	// next is the number of the entry the next header is.
	next int
	// needs are the entries the output takes, by number; needs[k] is the
	// first not yet read.
	needs []need
	k     int
}

// content writes ino's content (named p in the output) to w.
func (r *reader) content(w io.Writer, ino *inode, p string) error {
	if ino.src.open != nil {
		return copyExternal(w, ino, p, r.buf)
	}
	k := spoolKey{ino.src.layer, ino.src.entry}
	if sr, ok := r.sp.take(k); ok {
		if _, err := io.CopyBuffer(w, sr, r.buf); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	}
	c := r.cursors[ino.src.layer]
	if c.s == nil {
		s, err := openStream(r.ctx, r.t.source(ino.src.layer), false)
		if err != nil {
			return fmt.Errorf("%s: %w", r.t.layerName(ino.src.layer), err)
		}
		c.s, c.tr = s, tar.NewReader(s)
	}
	for {
		h, err := c.tr.Next()
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return fmt.Errorf("%s: %w", r.t.layerName(ino.src.layer), c.s.fail(err))
		}
		n := c.next
		c.next++
		switch {
		case n == ino.src.entry:
			c.k++
			if h.Size != ino.size {
				return fmt.Errorf("%s: entry %q: %w: %d bytes, %d when first read", r.t.layerName(ino.src.layer), h.Name, ErrChanged, h.Size, ino.size)
			}
			if _, err := copyN(w, c.tr, ino.size, r.buf); err != nil {
				return fmt.Errorf("%s: entry %q: %w", r.t.layerName(ino.src.layer), h.Name, c.s.fail(err))
			}
			return nil
		case c.k < len(c.needs) && c.needs[c.k].entry == n:
			// Needed later in the output: kept until then.
			c.k++
			if h.Size != c.needs[c.k-1].size {
				return fmt.Errorf("%s: entry %q: %w", r.t.layerName(ino.src.layer), h.Name, ErrChanged)
			}
			if err := r.sp.put(spoolKey{ino.src.layer, n}, c.tr, h.Size); err != nil {
				return fmt.Errorf("%s: entry %q: %w", r.t.layerName(ino.src.layer), h.Name, c.s.fail(err))
			}
		case n > ino.src.entry:
			return fmt.Errorf("%s: entry %d: %w: passed over", r.t.layerName(ino.src.layer), ino.src.entry, ErrChanged)
		}
	}
}

// ErrChanged means a layer, or a bundle's file, read a second time is
// not what it was the first time.
var ErrChanged = errors.New("changed between two reads")

// copyExternal writes the content of a file of a bundle's rootfs, which
// must still have the size it had when the tree took it.
func copyExternal(w io.Writer, ino *inode, p string, buf []byte) error {
	f, err := ino.src.open()
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	n, err := io.CopyBuffer(w, io.LimitReader(f, ino.size), buf)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); n != ino.size || m > 0 {
		return fmt.Errorf("%s: %w: its size changed", p, ErrChanged)
	}
	return nil
}

// copyN is io.CopyN with the buffer buf.
func copyN(w io.Writer, r io.Reader, n int64, buf []byte) (int64, error) {
	written, err := io.CopyBuffer(w, io.LimitReader(r, n), buf)
	if err == nil && written < n {
		err = io.ErrUnexpectedEOF
	}
	return written, err
}

// finish reads every opened layer to its end, which verifies its blob.
func (r *reader) finish() error {
	for l, c := range r.cursors {
		if c.s == nil {
			continue
		}
		if err := c.s.finish(); err != nil {
			return fmt.Errorf("%s: %w", r.t.layerName(l), err)
		}
	}
	return nil
}

func (r *reader) close() {
	for _, c := range r.cursors {
		if c.s != nil {
			c.s.close()
		}
	}
	r.sp.close()
}
