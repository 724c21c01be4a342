package layer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// selinuxXattr is the host's label of a file, not image content: a diff
// never carries it.
const selinuxXattr = "security.selinux"

// Ownership turns what a tree shows of a file's owner back into the
// image's owner, for a diff.
type Ownership struct {
	// Rootless: the tree was written under a mapping (a rootless
	// extraction, see ApplyOptions): image owners it lacks are in the
	// user.rootlesscontainers xattr, the file belonging to what stands
	// for the image's root.
	Rootless bool
	// ToImage (Rootless) maps image IDs onto the IDs this process sees
	// the tree's files owned by; IDs it does not map are taken as they
	// are (in strata's namespace, what the container set).
	ToImage *ids.Map
	// IDMap (not Rootless) shifts image IDs to host IDs (--uid-map).
	IDMap *ids.Map
}

// Owner is the image's owner of a file the rootfs shows as st. In a
// rootless rootfs the xattr speaks only for a uid or gid that is still
// the one written with it, root's: an owner the container changed to
// another ID is taken from the file, as the namespace maps it.
func (o Ownership) Owner(name string, st *unix.Stat_t, xattrs map[string][]byte) (int, int, error) {
	uid, gid := int(st.Uid), int(st.Gid)
	if !o.Rootless {
		u, g, err := o.IDMap.ToContainer(uid, gid)
		if err != nil {
			return 0, 0, fmt.Errorf("owner %d:%d of %s: %w", uid, gid, name, err)
		}
		return u, g, nil
	}
	if o.ToImage != nil {
		if u, ok := ids.Reverse(o.ToImage.UIDs, uid); ok {
			uid = u
		}
		if g, ok := ids.Reverse(o.ToImage.GIDs, gid); ok {
			gid = g
		}
	}
	if v, ok := xattrs[RootlessXattr]; ok && (uid == 0 || gid == 0) {
		xu, xg, err := DecodeRootless(v)
		if err != nil {
			return 0, 0, fmt.Errorf("owner of %s: %w", name, err)
		}
		// umoci writes 2^32-1, "as the file is", for root.
		if uint32(xu) == rootlessNoopID {
			xu = 0
		}
		if uint32(xg) == rootlessNoopID {
			xg = 0
		}
		if uid == 0 {
			uid = xu
		}
		if gid == 0 {
			gid = xg
		}
	}
	return uid, gid, nil
}

// FileType is the Entry type of a file of mode (a stat's), false for a
// socket, which has no tar form.
func FileType(mode uint32) (byte, bool) {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return TypeReg, true
	case unix.S_IFDIR:
		return TypeDir, true
	case unix.S_IFLNK:
		return TypeSymlink, true
	case unix.S_IFCHR:
		return TypeChar, true
	case unix.S_IFBLK:
		return TypeBlock, true
	case unix.S_IFIFO:
		return TypeFifo, true
	}
	return 0, false
}

// settable says whether an unprivileged extraction could have written the
// xattr name on a file of type t: only user.* on files and directories.
func settable(name string, t byte) bool {
	return strings.HasPrefix(name, "user.") && (t == TypeReg || t == TypeDir)
}

// DiskEntry describes the file full (at rel in the rootfs) as the image
// would: owners mapped back, placeholders seen as the devices they stand
// for, and in rootless mode what the user could not write (xattrs outside
// user.*, symlink owners) taken from old, the parent's entry.
func (o Ownership) DiskEntry(full, rel string, st *unix.Stat_t, xattrs map[string][]byte, old *Entry) (*Entry, error) {
	t, ok := FileType(st.Mode)
	if !ok {
		return nil, fmt.Errorf("%s: unsupported file type %o (a socket cannot be part of a layer)", rel, st.Mode&unix.S_IFMT)
	}
	e := &Entry{Path: rel, Type: t, Mode: st.Mode & 0o7777, Mtime: st.Mtim.Nano()}
	uid, gid, err := o.Owner(rel, st, xattrs)
	if err != nil {
		return nil, err
	}
	e.UID, e.GID = uid, gid
	for k, v := range xattrs {
		if k == selinuxXattr || (o.Rootless && k == RootlessXattr) {
			continue
		}
		if e.Xattrs == nil {
			e.Xattrs = map[string][]byte{}
		}
		e.Xattrs[k] = v
	}
	switch t {
	case TypeReg:
		e.Size = st.Size
	case TypeSymlink:
		l, err := os.Readlink(full)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rel, err)
		}
		e.Link = l
	case TypeChar, TypeBlock:
		e.DevMajor, e.DevMinor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	if o.Rootless && old != nil {
		if old.Placeholder && t == TypeReg && st.Size == 0 {
			e.Type, e.Size, e.DevMajor, e.DevMinor, e.Placeholder = old.Type, 0, old.DevMajor, old.DevMinor, true
		}
		if t == TypeSymlink && old.Type == TypeSymlink {
			// A symlink carries no xattr: the list keeps what a
			// root-owned one stands for.
			if e.UID == 0 {
				e.UID = old.UID
			}
			if e.GID == 0 {
				e.GID = old.GID
			}
		}
		if old.Type == e.Type {
			for k, v := range old.Xattrs {
				if _, ok := e.Xattrs[k]; !ok && !settable(k, t) && k != RootlessXattr {
					if e.Xattrs == nil {
						e.Xattrs = map[string][]byte{}
					}
					e.Xattrs[k] = v
				}
			}
		}
	}
	return e, nil
}

// EntryAt describes base in the directory dfd (at rel) as DiskEntry does,
// reading its xattrs and link target through dfd, never following base.
func (o Ownership) EntryAt(dfd int, base, rel string, st *unix.Stat_t, old *Entry) (*Entry, error) {
	p := fsx.ProcPath(dfd, base)
	x, err := fsx.ReadXattrs(p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	return o.DiskEntry(p, rel, st, x, old)
}

// SameEntry compares what a layer entry carries, content aside.
func SameEntry(a, b *Entry) bool {
	if a.Type != b.Type || a.Mode != b.Mode || a.UID != b.UID || a.GID != b.GID || a.Mtime != b.Mtime {
		return false
	}
	switch a.Type {
	case TypeReg:
		if a.Size != b.Size {
			return false
		}
	case TypeSymlink:
		if a.Link != b.Link {
			return false
		}
	case TypeChar, TypeBlock:
		if a.DevMajor != b.DevMajor || a.DevMinor != b.DevMinor {
			return false
		}
	}
	ax, bx := a.Xattrs, b.Xattrs
	if len(ax) != len(bx) {
		return false
	}
	for k, v := range ax {
		w, ok := bx[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// File capability xattr forms (linux/capability.h): v2 holds the
// capability sets, v3 adds the uid of the user namespace root they are
// for.
const (
	capXattr       = "security.capability"
	capRevisionV2  = 0x02000000
	capRevisionV3  = 0x03000000
	capRevisionBit = 0xff000000
	capV2Size      = 20
	capV3Size      = 24
)

// UnshiftCaps puts file capabilities back in the image's terms. In a
// rootfs shifted by m, capabilities are scoped to the container's root:
// the kernel shows (and copy-up and setcap in the container store) the
// v3 form naming its host uid, where the image had the v2 form, which
// means "for root". A root uid that maps back to the image's root gives
// the v2 form again, as the kernel itself writes it for the initial
// namespace; any other mapped uid stays v3 with the image's uid.
func UnshiftCaps(d *Diff, m *ids.Map) error {
	for _, c := range d.changes {
		if c.Entry == nil {
			continue
		}
		v, ok := c.Entry.Xattrs[capXattr]
		if !ok || len(v) != capV3Size || binary.LittleEndian.Uint32(v)&capRevisionBit != capRevisionV3 {
			continue
		}
		host := binary.LittleEndian.Uint32(v[capV2Size:])
		id, err := ids.ContainerID(m.UIDs, int(host))
		if err != nil {
			return fmt.Errorf("%s of /%s: root uid %d: %w", capXattr, c.Path, host, err)
		}
		var out []byte
		if id == 0 {
			out = append([]byte(nil), v[:capV2Size]...)
			flags := binary.LittleEndian.Uint32(out) &^ capRevisionBit
			binary.LittleEndian.PutUint32(out, capRevisionV2|flags)
		} else {
			out = append([]byte(nil), v...)
			binary.LittleEndian.PutUint32(out[capV2Size:], uint32(id))
		}
		c.Entry.Xattrs[capXattr] = out
	}
	return nil
}
