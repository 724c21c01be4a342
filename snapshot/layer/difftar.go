package layer

import (
	"archive/tar"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// ChangeKind says what a change of a diff does.
type ChangeKind int

const (
	// ChangeFile writes a file with its metadata (and a regular file's
	// content, read from the diff's root at its path). For a directory
	// it carries the directory's metadata only.
	ChangeFile ChangeKind = iota
	// ChangeLink makes the path a hardlink to LinkTo.
	ChangeLink
	// ChangeWhiteout deletes the path.
	ChangeWhiteout
	// ChangeOpaque makes the directory at the path hide what lower
	// layers hold.
	ChangeOpaque
)

// Change is one entry of a layer diff.
type Change struct {
	Kind ChangeKind
	Path string
	// Entry describes the file (ChangeFile and ChangeLink).
	Entry *Entry
	// LinkTo is the path a ChangeLink links to.
	LinkTo string
	// Dev and Ino identify the regular file the diff saw at Path:
	// WriteTar refuses another one in its place.
	Dev, Ino uint64
	// clamped is set by WriteTar when it capped the entry's mtime.
	clamped bool
}

// Diff is the change of a tree against the one it was made from, as the
// entries of a layer in the order they are written: depth first, each
// directory's names in byte order, a directory before its contents.
type Diff struct {
	changes []*Change
	// root is the directory the files are read from (a rootfs or an
	// upper directory), always through names resolved inside it.
	root string
}

// NewDiff returns the diff of the changes, in layer order, whose files
// are read from the directory root.
func NewDiff(root string, changes []*Change) *Diff { return &Diff{changes: changes, root: root} }

// Empty says whether nothing changed: commit then adds no layer.
func (d *Diff) Empty() bool { return len(d.changes) == 0 }

// Len is the number of layer entries (whiteouts included).
func (d *Diff) Len() int { return len(d.changes) }

// Paths lists the entries as a layer names them, for messages and tests:
// whiteouts as .wh. names, hardlinks as "NAME -> TARGET".
func (d *Diff) Paths() []string {
	out := make([]string, 0, len(d.changes))
	for _, c := range d.changes {
		out = append(out, c.tarName())
	}
	return out
}

func (c *Change) tarName() string {
	switch c.Kind {
	case ChangeWhiteout:
		return whiteoutName(c.Path)
	case ChangeOpaque:
		return opaqueName(c.Path)
	case ChangeLink:
		return c.Path + " -> " + c.LinkTo
	}
	if c.Entry != nil && c.Entry.Type == TypeDir {
		return c.Path + "/"
	}
	return c.Path
}

// WriteOptions tune how a diff is written as a layer.
type WriteOptions struct {
	// Clamp, when set, caps every mtime at this time, as BuildKit's
	// rewrite-timestamp does: files changed after it get it, older files
	// keep theirs, so that the same change gives the same layer.
	Clamp *time.Time
	// Rootless lends the owner read permission to files that lack it.
	Rootless bool
}

// WriteTar writes the diff as an uncompressed PAX tar layer: entries in
// the diff's order, owners as numbers with no names, xattrs as
// SCHILY.xattr records, mtimes with nanoseconds and no atime or ctime, so
// that the same change always gives the same bytes. Whiteouts and opaque
// markers are empty files owned by root with mtime 0.
func (d *Diff) WriteTar(w io.Writer, o WriteOptions) error {
	var t *fsx.Tree
	if d.root != "" {
		var err error
		if t, err = fsx.OpenTree(d.root); err != nil {
			return err
		}
		defer t.Close()
	}
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	for _, c := range d.changes {
		hdr := c.header(o.Clamp)
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer entry %s: %w", c.Path, err)
		}
		if hdr.Typeflag == tar.TypeReg && c.Kind == ChangeFile && hdr.Size > 0 {
			if t == nil {
				return fmt.Errorf("layer entry %s: diff has no root to read it from", c.Path)
			}
			if err := copyContent(tw, t, c, hdr.Size, buf); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layer end: %w", err)
	}
	return nil
}

func (c *Change) header(clamp *time.Time) *tar.Header {
	switch c.Kind {
	case ChangeWhiteout, ChangeOpaque:
		name := whiteoutName(c.Path)
		if c.Kind == ChangeOpaque {
			name = opaqueName(c.Path)
		}
		return &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "./"), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	}
	e := c.Entry
	mt := time.Unix(0, e.Mtime)
	if clamp != nil && mt.After(*clamp) {
		mt = *clamp
		c.clamped = true
	}
	hdr := &tar.Header{
		Name:    e.Path,
		Mode:    int64(e.Mode),
		Uid:     e.UID,
		Gid:     e.GID,
		ModTime: mt,
		Format:  tar.FormatPAX,
	}
	for _, k := range sortedKeys(e.Xattrs) {
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+k] = string(e.Xattrs[k])
	}
	if c.Kind == ChangeLink {
		hdr.Typeflag, hdr.Linkname = tar.TypeLink, c.LinkTo
		return hdr
	}
	switch e.Type {
	case TypeReg:
		hdr.Typeflag, hdr.Size = tar.TypeReg, e.Size
	case TypeDir:
		hdr.Typeflag, hdr.Name = tar.TypeDir, e.Path+"/"
	case TypeSymlink:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.Link
	case TypeChar:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeChar, e.DevMajor, e.DevMinor
	case TypeBlock:
		hdr.Typeflag, hdr.Devmajor, hdr.Devminor = tar.TypeBlock, e.DevMajor, e.DevMinor
	case TypeFifo:
		hdr.Typeflag = tar.TypeFifo
	}
	return hdr
}

// copyContent writes size bytes of c's file, opened inside t (files
// without read permission are lent it for the time of the open); a file
// that is shorter or longer than when it was compared fails the layer
// rather than giving it a header that lies.
func copyContent(w io.Writer, t *fsx.Tree, c *Change, size int64, buf []byte) error {
	f, err := openClean(t, c.Path)
	if err != nil {
		return fmt.Errorf("layer entry %s: %w", c.Path, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("layer entry %s: %w", c.Path, err)
	}
	if st.Ino != c.Ino || st.Dev != c.Dev {
		return fmt.Errorf("layer entry %s: %w: replaced", c.Path, ErrChangedDuringCommit)
	}
	n, err := io.CopyBuffer(w, io.LimitReader(f, size), buf)
	if err != nil {
		return fmt.Errorf("layer entry %s: %w", c.Path, err)
	}
	if n != size {
		return fmt.Errorf("layer entry %s: %w: %d bytes of %d", c.Path, ErrChangedDuringCommit, n, size)
	}
	var one [1]byte
	if m, _ := f.Read(one[:]); m > 0 {
		return fmt.Errorf("layer entry %s: %w: longer than %d bytes", c.Path, ErrChangedDuringCommit, size)
	}
	return nil
}

// FixClamped gives the files of rootfs whose mtime WriteTar clamped the
// layer's mtime, so that the rootfs and the layer's snapshot agree and
// the next diff does not see them as changed. Names resolve inside
// rootfs.
func (d *Diff) FixClamped(rootfs string, clamp time.Time) error {
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return err
	}
	defer t.Close()
	ts := unix.NsecToTimespec(clamp.UnixNano())
	for _, c := range d.changes {
		if !c.clamped || c.Kind == ChangeWhiteout || c.Kind == ChangeOpaque {
			continue
		}
		dir, base := split(c.Path)
		dfd, err := t.Dir(dir)
		if err == nil {
			err = unix.UtimesNanoAt(dfd, base, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
			unix.Close(dfd)
		}
		if err != nil {
			return fmt.Errorf("set clamped mtime of %s: %w", c.Path, err)
		}
	}
	return nil
}
