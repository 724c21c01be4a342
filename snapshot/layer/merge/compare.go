package merge

import (
	"bytes"
	"context"
	"sort"

	"github.com/strata-oci/strata/snapshot/layer"
)

// Kind is what a Change does, in podman diff's letters.
type Kind byte

// Kinds of changes.
const (
	Added   Kind = 'A'
	Deleted Kind = 'D'
	Changed Kind = 'C'
)

func (k Kind) String() string { return string(rune(k)) }

// What differs between two files at one path (Change.Fields).
const (
	FieldType    = "type"
	FieldMode    = "mode"
	FieldOwner   = "owner"
	FieldSize    = "size"
	FieldContent = "content"
	FieldLink    = "link"
	FieldDevice  = "device"
	FieldXattrs  = "xattrs"
)

// Change is one difference between two trees.
type Change struct {
	Kind Kind
	// Path is slash-separated, relative to the root.
	Path string
	// Fields say what differs (FieldType, ...) when Kind is Changed;
	// none for a directory listed only because something under it
	// changed.
	Fields []string
	// Old and New are the file in the first tree and in the second
	// (nil where the tree has none).
	Old, New *File
	// Layer is the index of the second tree's layer that made the
	// change: the one whose entry put the new file there, or that
	// removed the old one. It is -1 when none did (the second tree never
	// had the file, or a directory is listed for what is under it).
	Layer int
}

// Compare lists what differs from tree a to tree b, as podman diff and
// docker diff list a container's changes: every file b adds (what is
// under an added directory too), every file of a that b lacks (a removed
// directory alone, not what was under it), every file whose type, mode,
// owner, size, content, symlink target, device numbers or xattrs differ,
// and every directory of both that holds such a change. A file whose
// mtime alone differs has not changed. Changes come in tree order.
//
// Contents are compared by sha256 where sizes match and the files do not
// come from the same entry of the same layer (or of layers with one
// diffID): only the layers holding such files are read, once each.
// b needs Options.Removals for deletions to name the layer that made
// them.
func Compare(ctx context.Context, a, b *Tree) ([]Change, error) {
	c := &comparer{a: a, b: b}
	// First which contents must be hashed, then the changes.
	c.walk(a.root, b.root, ".", true, nil)
	if err := a.digests(ctx, c.hashA); err != nil {
		return nil, err
	}
	if err := b.digests(ctx, c.hashB); err != nil {
		return nil, err
	}
	a.plan() // first names, for File.HardlinkTo
	b.plan()
	var out []Change
	if f := c.fields(a.root, b.root); len(f) > 0 {
		out = append(out, Change{Kind: Changed, Path: ".", Fields: f, Old: fileOf(a.root, "."), New: fileOf(b.root, "."), Layer: b.root.layer})
	}
	c.walk(a.root, b.root, ".", true, &out)
	return out, nil
}

type comparer struct {
	a, b         *Tree
	hashA, hashB []*inode
}

// walk compares the entries of directory bn of b with those of an, the
// file at the same path p of a (nil when a has none). With out nil it
// only collects the contents to hash. listed says bn is listed already
// (added or changed), else it is listed when something under it changed.
func (c *comparer) walk(an, bn *node, p string, listed bool, out *[]Change) {
	start := 0
	if out != nil {
		start = len(*out)
	}
	var akids map[string]*node
	if an != nil && an.isDir() {
		akids = an.kids
	}
	names := make([]string, 0, len(bn.kids)+len(akids))
	for k := range bn.kids {
		names = append(names, k)
	}
	for k := range akids {
		if bn.kids[k] == nil {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		ak, bk := akids[name], bn.kids[name]
		kp := name
		if p != "." {
			kp = p + "/" + name
		}
		switch {
		case bk == nil:
			if out != nil {
				l, ok := c.b.RemovedBy(kp)
				if !ok {
					l = -1
				}
				*out = append(*out, Change{Kind: Deleted, Path: kp, Old: fileOf(ak, kp), Layer: l})
			}
			continue
		case ak == nil:
			if out != nil {
				*out = append(*out, Change{Kind: Added, Path: kp, New: fileOf(bk, kp), Layer: bk.layer})
			}
		case out == nil:
			c.needHash(ak, bk)
		default:
			if f := c.fields(ak, bk); len(f) > 0 {
				*out = append(*out, Change{Kind: Changed, Path: kp, Fields: f, Old: fileOf(ak, kp), New: fileOf(bk, kp), Layer: bk.layer})
			}
		}
		if bk.isDir() {
			wasListed := ak == nil
			if out != nil && !wasListed {
				wasListed = len(*out) > 0 && (*out)[len(*out)-1].Path == kp
			}
			c.walk(ak, bk, kp, wasListed, out)
		}
	}
	if out != nil && !listed && len(*out) > start {
		// Listed before what changed under it, as docker lists it.
		d := Change{Kind: Changed, Path: p, Old: fileOf(an, p), New: fileOf(bn, p), Layer: -1}
		*out = append(*out, Change{})
		copy((*out)[start+1:], (*out)[start:])
		(*out)[start] = d
	}
}

// needHash notes the contents of a and b to hash: regular files of one
// size, not known to be the same.
func (c *comparer) needHash(a, b *node) {
	ai, bi := a.ino, b.ino
	if ai.typ != layer.TypeReg || bi.typ != layer.TypeReg || ai.size != bi.size || ai.size == 0 {
		return
	}
	if same(c.a, ai, c.b, bi) {
		return
	}
	c.hashA = append(c.hashA, ai)
	c.hashB = append(c.hashB, bi)
}

// fields says what differs between a and b.
func (c *comparer) fields(a, b *node) []string {
	ai, bi := a.ino, b.ino
	if ai.typ != bi.typ {
		return []string{FieldType}
	}
	var f []string
	if ai.mode != bi.mode {
		f = append(f, FieldMode)
	}
	if ai.uid != bi.uid || ai.gid != bi.gid {
		f = append(f, FieldOwner)
	}
	switch ai.typ {
	case layer.TypeReg:
		if ai.size != bi.size {
			f = append(f, FieldSize, FieldContent)
		} else if ai.size > 0 && !same(c.a, ai, c.b, bi) && ai.digest != bi.digest {
			f = append(f, FieldContent)
		}
	case layer.TypeSymlink:
		if ai.link != bi.link {
			f = append(f, FieldLink)
		}
	case layer.TypeChar, layer.TypeBlock:
		if ai.devMajor != bi.devMajor || ai.devMinor != bi.devMinor {
			f = append(f, FieldDevice)
		}
	}
	if !sameXattrs(ai.xattrs, bi.xattrs) {
		f = append(f, FieldXattrs)
	}
	return f
}

func sameXattrs(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
