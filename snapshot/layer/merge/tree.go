package merge

import (
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot/layer"
)

// inode is what one or more names of the tree share: a file with its
// metadata and, for a regular file, where its content is. Hardlinks are
// names of one inode. Only a directory's inode changes once made (a
// directory entry over an existing directory replaces its metadata);
// every other entry makes a new one.
type inode struct {
	typ                byte // layer.TypeReg, ...
	mode               uint32
	uid, gid           int
	mtime              int64
	size               int64
	link               string // a symlink's target
	devMajor, devMinor int64
	xattrs             map[string][]byte
	// src is where a regular file's content is.
	src source
	// digest is the content's sha256 once computed (Compare).
	digest digest.Digest
	// firstPath is the name an output writes the inode's content under:
	// the first of its names in tree order. Its other names are
	// hardlinks to it.
	firstPath string
}

// source says where a regular file's content is: entry number entry
// (counted from 0, as the tar reader returns headers) of layer layer, or
// a file opened by open (a bundle's changed file).
type source struct {
	layer int
	entry int
	open  func() (io.ReadCloser, error)
}

// node is one name of the tree.
type node struct {
	name   string
	parent *node
	// kids are a directory's entries by name.
	kids map[string]*node
	ino  *inode
	// layer is the layer whose entry put the name here, -1 for a
	// directory no layer lists (made for a path under it) and for the
	// root until a layer lists it.
	layer int
}

func (n *node) isDir() bool { return n.ino.typ == layer.TypeDir }

// path is the node's slash-separated path from the root ("." for the
// root).
func (n *node) path() string {
	if n.parent == nil {
		return "."
	}
	var parts []string
	for p := n; p.parent != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return strings.Join(parts, "/")
}

// sortedKids returns a directory's entries by name, in byte order.
func (n *node) sortedKids() []*node {
	out := make([]*node, 0, len(n.kids))
	for _, k := range n.kids {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// record is one layer entry as the tree takes it: a tar header's fields
// that matter, or a change of a bundle's rootfs.
type record struct {
	name               string // as the layer gives it
	typ                byte   // tar type flag
	mode               int64
	uid, gid           int
	mtime              int64
	size               int64
	linkname           string
	devMajor, devMinor int64
	xattrs             map[string][]byte
	src                source
}

// Errors of a layer stack that cannot be merged. Each is wrapped with the
// layer and entry it was found in.
var (
	// ErrUnsafePath means an entry's name climbs out of the root.
	ErrUnsafePath = layer.ErrUnsafePath
	// ErrBadEntry means an entry cannot be applied: a name under a file,
	// a hardlink to a directory or to nothing, an unsupported type.
	ErrBadEntry = errors.New("entry cannot be applied")
)

// applier applies one layer's records to the tree, as snapshot/layer's
// extractor applies them to a directory: later entries win, whiteouts
// and opaque markers hide what lower layers hold (never what this layer
// wrote), names resolve through symlinks inside the root, hardlinks share
// their target's inode.
type applier struct {
	t *Tree
	l int
	// written holds the names this layer wrote, upper the directories
	// above them: a whiteout or an opaque marker keeps both, as the
	// extractor does. Both are names as the layer gives them, not
	// resolved through symlinks, as the extractor keeps them.
	written map[string]bool
	upper   map[string]bool
}

func (t *Tree) newApplier(l int) *applier {
	return &applier{t: t, l: l, written: map[string]bool{}, upper: map[string]bool{}}
}

// cleanName turns an entry name into a path relative to the root ("."
// for the root); names that climb out are refused.
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("%w: NUL in name", ErrUnsafePath)
	}
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("%w: %q", ErrUnsafePath, name)
	}
	return n, nil
}

func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return ".", p
	}
	return p[:i], p[i+1:]
}

// Whiteout names from the OCI layer spec.
const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

const paxXattr = "SCHILY.xattr."

func (a *applier) apply(r *record) error {
	if r.typ == 'g' { // a PAX global header: no file
		return nil
	}
	name, err := cleanName(r.name)
	if err != nil {
		return err
	}
	dir, base := splitPath(name)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dir, base)
	}
	ino := &inode{
		mode: uint32(r.mode) & 0o7777, uid: r.uid, gid: r.gid, mtime: r.mtime,
		devMajor: r.devMajor, devMinor: r.devMinor, xattrs: r.xattrs,
	}
	if name == "." {
		if r.typ != '5' {
			return fmt.Errorf("%w: the root can only be a directory", ErrUnsafePath)
		}
		ino.typ = layer.TypeDir
		a.t.root.ino = ino
		a.t.root.layer = a.l
		return nil
	}
	if r.typ == '1' {
		ino = nil // a hardlink: its target's inode
	} else if err := setType(ino, r); err != nil {
		return err
	}
	parent, err := a.t.resolve(dir, true, a.l)
	if err != nil {
		return err
	}
	a.written[name] = true
	for p := dir; p != "." && !a.upper[p]; p, _ = splitPath(p) {
		a.upper[p] = true
	}
	if !parent.isDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrBadEntry, parent.path())
	}
	var target *node
	if ino == nil {
		if target, err = a.linkTarget(name, r.linkname); err != nil {
			return err
		}
		ino = target.ino
	}
	old := parent.kids[base]
	var n *node
	if old != nil && old.isDir() && ino.typ == layer.TypeDir {
		// An existing directory keeps its entries; its metadata is
		// replaced.
		old.ino, old.layer = ino, a.l
		n = old
	} else {
		if old != nil {
			a.t.drop(old, a.l, false)
		}
		if target != nil && !linked(target) {
			// Clearing the name removed the link's own target.
			return fmt.Errorf("%w: hardlink %s to %s, which the entry replaces", ErrBadEntry, name, r.linkname)
		}
		n = &node{name: base, parent: parent, ino: ino, layer: a.l}
		if ino.typ == layer.TypeDir {
			n.kids = map[string]*node{}
		}
		parent.kids[base] = n
		a.t.count++
	}
	return nil
}

// setType gives ino the file type of r, a tar entry other than a hardlink.
func setType(ino *inode, r *record) error {
	switch r.typ {
	case '0', 0, '7', 'S':
		ino.typ, ino.size, ino.src = layer.TypeReg, r.size, r.src
	case '5':
		ino.typ = layer.TypeDir
	case '2':
		ino.typ, ino.link = layer.TypeSymlink, r.linkname
	case '3':
		ino.typ = layer.TypeChar
	case '4':
		ino.typ = layer.TypeBlock
	case '6':
		ino.typ = layer.TypeFifo
	default:
		return fmt.Errorf("%w: unsupported tar entry type %q", ErrBadEntry, r.typ)
	}
	return nil
}

// linkTarget finds the name a hardlink entry name links to.
func (a *applier) linkTarget(name, target string) (*node, error) {
	tname, err := cleanName(target)
	if err != nil {
		return nil, err
	}
	if tname == "." || tname == name {
		return nil, fmt.Errorf("%w: hardlink %q to %q", ErrUnsafePath, name, target)
	}
	tdir, tbase := splitPath(tname)
	d, err := a.t.resolve(tdir, false, a.l)
	var tn *node
	if err == nil && d.isDir() {
		tn = d.kids[tbase]
	}
	if tn == nil {
		return nil, fmt.Errorf("%w: hardlink target %s is in no layer below", ErrBadEntry, target)
	}
	if tn.isDir() {
		return nil, fmt.Errorf("%w: hardlink target %s is a directory", ErrBadEntry, target)
	}
	return tn, nil
}

// linked reports whether n is still in the tree, for a hardlink whose own
// name's removal may have taken its target with it.
func linked(n *node) bool {
	for p := n; p.parent != nil; p = p.parent {
		if p.parent.kids[p.name] != p {
			return false
		}
	}
	return true
}

func (a *applier) whiteout(dir, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(dir)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other .wh..wh. names are aufs bookkeeping
	}
	victim := strings.TrimPrefix(base, whiteoutPrefix)
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("%w: whiteout %q", ErrUnsafePath, base)
	}
	name := joinPath(dir, victim)
	if a.written[name] {
		// Whiteouts hide lower layers, not this one.
		return nil
	}
	if a.upper[name] {
		// This layer put files under it: only what lower layers hold
		// there goes, as with an opaque marker.
		return a.opaque(name)
	}
	d, err := a.t.resolve(dir, false, a.l)
	if err != nil {
		if errors.Is(err, errNotExist) || errors.Is(err, errNotDir) {
			return nil
		}
		return err
	}
	if !d.isDir() {
		return nil
	}
	if n := d.kids[victim]; n != nil {
		a.t.drop(n, a.l, true)
	}
	return nil
}

// opaque removes from the directory dir (named as the layer names it)
// what lower layers put there, keeping what this layer wrote and the
// directories above it.
func (a *applier) opaque(dir string) error {
	d, err := a.t.resolve(dir, false, a.l)
	if errors.Is(err, errNotExist) || errors.Is(err, errNotDir) || (err == nil && !d.isDir()) {
		return nil // nothing there to hide
	}
	if err != nil {
		return err
	}
	a.prune(d, dir)
	return nil
}

// prune is opaque for the directory d, named dir: names under it are
// dir's, whatever d's own path, as the extractor names them.
func (a *applier) prune(d *node, dir string) {
	for _, k := range d.sortedKids() {
		p := joinPath(dir, k.name)
		if !a.written[p] && !a.upper[p] {
			a.t.drop(k, a.l, true)
			continue
		}
		if k.isDir() {
			a.prune(k, p)
		}
	}
}

// drop removes n and everything under it from the tree. l is the layer
// that removes it; self says that n's own name goes (a whiteout) rather
// than being taken by a new entry, for RemovedBy.
func (t *Tree) drop(n *node, l int, self bool) {
	delete(n.parent.kids, n.name)
	t.forget(n, l, self)
}

func (t *Tree) forget(n *node, l int, self bool) {
	t.count--
	if t.removed != nil && self {
		t.removed[n.path()] = l
	}
	for _, k := range n.kids {
		t.forget(k, l, true)
	}
}

// Resolution errors: what openat2 with RESOLVE_IN_ROOT would say.
var (
	errNotExist = errors.New("no such file or directory")
	errNotDir   = errors.New("not a directory")
	errLoop     = errors.New("too many levels of symbolic links")
)

// maxLinks is the kernel's limit of symlinks followed in one resolution.
const maxLinks = 40

// resolve finds the directory p (cleaned, relative) the way the extractor
// does under RESOLVE_IN_ROOT: every symlink on the way is followed, the
// last component's too, absolute targets from the root, ".." stopping at
// the root. With create, directories of p itself that are missing are
// made (not those a symlink's target names, as mkdir -p would not),
// listed by no layer; layer l makes them.
func (t *Tree) resolve(p string, create bool, l int) (*node, error) {
	type comp struct {
		name string
		own  bool // from p itself, not from a symlink's target
	}
	var comps []comp
	for _, c := range strings.Split(p, "/") {
		comps = append(comps, comp{c, true})
	}
	cur := t.root
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c.name {
		case "", ".":
			continue
		case "..":
			if cur.parent != nil {
				cur = cur.parent
			}
			continue
		}
		if !cur.isDir() {
			return nil, fmt.Errorf("%s: %w", p, errNotDir)
		}
		n := cur.kids[c.name]
		if n == nil {
			if !create || !c.own {
				return nil, fmt.Errorf("%s: %w", p, errNotExist)
			}
			n = &node{name: c.name, parent: cur, kids: map[string]*node{}, layer: -1,
				ino: &inode{typ: layer.TypeDir, mode: 0o755}}
			cur.kids[c.name] = n
			t.count++
		}
		if n.ino.typ == layer.TypeSymlink {
			if links++; links > maxLinks {
				return nil, fmt.Errorf("%s: %w", p, errLoop)
			}
			target := n.ino.link
			if strings.HasPrefix(target, "/") {
				cur = t.root
			}
			var tc []comp
			for _, s := range strings.Split(target, "/") {
				tc = append(tc, comp{s, false})
			}
			comps = append(tc, comps...)
			continue
		}
		cur = n
	}
	return cur, nil
}
