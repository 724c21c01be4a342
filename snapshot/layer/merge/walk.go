package merge

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot/layer"
)

// File is one file of a tree, as Walk shows it.
type File struct {
	// Entry holds the path ("." for the root) and metadata: type, mode,
	// owner, size, mtime, a symlink's target (Link), device numbers,
	// xattrs.
	layer.Entry
	// Layer is the index (into Tree.Layers) of the layer whose entry put
	// the file at its path, -1 for a directory that no layer lists.
	Layer int
	// HardlinkTo, for a file with several names, is the first of them in
	// tree order when this is another one; empty otherwise.
	HardlinkTo string
	// Digest is the sha256 of a regular file's content where Compare
	// computed it; empty otherwise.
	Digest digest.Digest
	n      *node
}

func fileOf(n *node, p string) *File {
	ino := n.ino
	f := &File{Entry: layer.Entry{
		Path: p, Type: ino.typ, Mode: ino.mode, UID: ino.uid, GID: ino.gid,
		Mtime: ino.mtime, DevMajor: ino.devMajor, DevMinor: ino.devMinor, Xattrs: ino.xattrs,
	}, Layer: n.layer, Digest: ino.digest, n: n}
	switch ino.typ {
	case layer.TypeReg:
		f.Size = ino.size
	case layer.TypeSymlink:
		f.Link = ino.link
	}
	if ino.firstPath != p {
		f.HardlinkTo = ino.firstPath
	}
	return f
}

// Walk calls fn for every file of the tree in tree order (as WriteTar
// writes them), the root (".") first. fn must not keep f.Xattrs beyond
// the tree's life; an error from fn stops the walk.
func (t *Tree) Walk(fn func(f *File) error) error {
	out := t.plan()
	if t.root.layer < 0 {
		if err := fn(fileOf(t.root, ".")); err != nil {
			return err
		}
	}
	for _, e := range out {
		if err := fn(fileOf(e.n, e.path)); err != nil {
			return err
		}
	}
	return nil
}

// same reports whether a and b are known to hold the same content
// without reading it: the same entry of one layer, or of two layers with
// the same diffID.
func same(ta *Tree, a *inode, tb *Tree, b *inode) bool {
	if a.src.open != nil || b.src.open != nil || a.src.layer < 0 || b.src.layer < 0 {
		return false
	}
	if a.src.entry != b.src.entry {
		return false
	}
	if ta == tb && a.src.layer == b.src.layer {
		return true
	}
	da, db := ta.layers[a.src.layer].DiffID, tb.layers[b.src.layer].DiffID
	return da != "" && da == db
}

// digests computes the sha256 of the content of inos (regular files of
// t), reading only the layers that hold them, on all cores.
func (t *Tree) digests(ctx context.Context, inos []*inode) error {
	byLayer := map[int]map[int]*inode{}
	var ext []*inode
	for _, ino := range inos {
		if ino.digest != "" {
			continue
		}
		if ino.size == 0 {
			ino.digest = digest.FromBytes(nil)
			continue
		}
		if ino.src.open != nil {
			ext = append(ext, ino)
			continue
		}
		m := byLayer[ino.src.layer]
		if m == nil {
			m = map[int]*inode{}
			byLayer[ino.src.layer] = m
		}
		m[ino.src.entry] = ino
	}
	buf := make([]byte, copyBuf)
	for _, ino := range ext {
		h := sha256.New()
		if err := copyExternal(h, ino, "file", buf); err != nil {
			return err
		}
		ino.digest = digest.NewDigest(digest.SHA256, h)
	}
	layers := make([]int, 0, len(byLayer))
	for l := range byLayer {
		layers = append(layers, l)
	}
	sort.Ints(layers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for w := 0; w < min(runtime.GOMAXPROCS(0), len(layers)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range next {
				if err := t.hashLayer(ctx, l, byLayer[l]); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("%s: %w", t.layerName(l), err)
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	for _, l := range layers {
		if ctx.Err() != nil {
			break
		}
		next <- l
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// hashLayer reads layer l once and hashes the contents of the entries
// want names.
func (t *Tree) hashLayer(ctx context.Context, l int, want map[int]*inode) error {
	s, err := openStream(ctx, t.source(l), false)
	if err != nil {
		return err
	}
	defer s.close()
	tr := tar.NewReader(s)
	buf := make([]byte, copyBuf)
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return s.fail(err)
		}
		ino := want[n]
		if ino == nil {
			continue
		}
		if h.Size != ino.size {
			return fmt.Errorf("entry %q: %w", h.Name, ErrChanged)
		}
		d := sha256.New()
		if _, err := copyN(d, tr, h.Size, buf); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, s.fail(err))
		}
		ino.digest = digest.NewDigest(digest.SHA256, d)
	}
	return s.finish()
}
