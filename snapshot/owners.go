package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/strata-oci/strata/snapshot/ids"
)

// StoreOptions say who uses a store. The caller decides them once (the
// strata command asks internal/userns at start-up) and passes them to
// Open: nothing in this package looks at the process's IDs or
// namespaces. The zero value is root in the initial user namespace.
type StoreOptions struct {
	// Rootless means the process is not root of the initial user
	// namespace: it cannot make device nodes (empty files stand in) nor
	// set trusted.* xattrs, its overlay layers use user.overlay.* xattrs,
	// and files get only the owners UserNS maps; every other owner is
	// kept in the user.rootlesscontainers xattr.
	Rootless bool
	// UserNS, with Rootless, is the ID mapping of the user namespace the
	// process runs in as its root (strata's own: the user as root and
	// its /etc/subuid and /etc/subgid ranges above), in
	// /proc/self/uid_map's terms: ContainerID is what the process sees,
	// HostID who that is outside. Image owners it maps are given as they
	// are. nil: no namespace, so files belong to UID:GID, who stand for
	// the image's root.
	UserNS *ids.Map
	// UID and GID are the process's own IDs (Rootless without UserNS).
	UID, GID int
}

// Owners is the ID mapping under which a process with o writes
// snapshots: image IDs onto the host IDs their files get. Empty (not nil)
// for root: every owner as it is.
func (o StoreOptions) Owners() *ids.Map {
	switch {
	case !o.Rootless:
		return &ids.Map{}
	case o.UserNS != nil && !o.UserNS.Empty():
		return o.UserNS.Clone()
	}
	return &ids.Map{
		UIDs: []ids.Range{{ContainerID: 0, HostID: uint32(o.UID), Size: 1}},
		GIDs: []ids.Range{{ContainerID: 0, HostID: uint32(o.GID), Size: 1}},
	}
}

// view is the mapping from the IDs the process sees to host IDs: its user
// namespace's, or, outside one, only its own IDs (an unprivileged process
// can give files no other). nil for root: all IDs as they are.
func (o StoreOptions) view() *ids.Map {
	switch {
	case !o.Rootless:
		return nil
	case o.UserNS != nil && !o.UserNS.Empty():
		return o.UserNS
	}
	return &ids.Map{
		UIDs: []ids.Range{{ContainerID: uint32(o.UID), HostID: uint32(o.UID), Size: 1}},
		GIDs: []ids.Range{{ContainerID: uint32(o.GID), HostID: uint32(o.GID), Size: 1}},
	}
}

// HostIDs is the process's own user and group outside any user
// namespace: a rootless runtime spec maps them to root.
func (o StoreOptions) HostIDs() (uint32, uint32) {
	if o.UserNS != nil && !o.UserNS.Empty() {
		u, okU := ids.Lookup(o.UserNS.UIDs, 0)
		g, okG := ids.Lookup(o.UserNS.GIDs, 0)
		if okU && okG {
			return uint32(u), uint32(g)
		}
	}
	return uint32(o.UID), uint32(o.GID)
}

// ErrOwnersMismatch means a bundle or snapshot was written under an ID
// mapping this process cannot write or read back: another user's, root's
// (for an unprivileged process), or a namespace that no longer maps the
// same IDs.
var ErrOwnersMismatch = errors.New("files were written under another ID mapping")

// ErrNotOwner means root was asked to write (commit, unpack into) what
// an unprivileged user's process wrote: only that user can.
var ErrNotOwner = errors.New("written by an unprivileged user")

// Writer returns, for snapshots written under the mapping form, the map
// from image IDs to the IDs this process gives files (see
// layer.ApplyOptions.Owners); nil for root writing root's form. It fails when
// this process cannot write that form.
func (o StoreOptions) Writer(form *ids.Map) (*ids.Map, error) {
	if form == nil || form.Empty() {
		if o.Rootless {
			return nil, fmt.Errorf("%w: they belong to the image's owners (written by root), and this process is not root", ErrOwnersMismatch)
		}
		return nil, nil
	}
	if !o.Rootless {
		// Its files stand for the image's owners by belonging to a
		// user's IDs, in a store that is theirs: what root wrote there
		// would lock them out of it.
		return nil, fmt.Errorf("%w (%s): %w", ErrOwnersMismatch, form, ErrNotOwner)
	}
	v := o.view()
	m := &ids.Map{}
	var err error
	if m.UIDs, err = ids.Compose(form.UIDs, v.UIDs); err != nil {
		return nil, fmt.Errorf("%w (%s; this process maps %s): uids: %v", ErrOwnersMismatch, form, v, err)
	}
	if m.GIDs, err = ids.Compose(form.GIDs, v.GIDs); err != nil {
		return nil, fmt.Errorf("%w (%s; this process maps %s): gids: %v", ErrOwnersMismatch, form, v, err)
	}
	return m, nil
}

// Key names the directory under ROOT/snapshots that holds a
// driver's snapshots written under the mapping form: the driver's name
// for the image's own owners (root), else the name and a short hash of
// the mapping. Each driver and mapping has its own snapshots, as
// containerd keeps each snapshotter's apart.
func Key(driver string, form *ids.Map) string {
	if form.Empty() {
		return driver
	}
	h := sha256.Sum256([]byte(form.String()))
	return driver + "." + hex.EncodeToString(h[:6])
}

// OwnersKind says in a word how a mapping's files carry the image's
// owners: "image" (as they are, root's), "xattr" (the user's own files;
// other owners in user.rootlesscontainers) or "userns" (the owners a user
// namespace maps, the rest in the xattr).
func OwnersKind(form *ids.Map) string {
	switch {
	case form.Empty():
		return "image"
	case ids.Count(form.UIDs) <= 1 && ids.Count(form.GIDs) <= 1:
		return "xattr"
	}
	return "userns"
}

// NeedsNamespace says whether files written under the mapping form have
// owners only a user namespace with that mapping can give or read
// (commit, mount and run such a bundle inside strata's namespace).
func NeedsNamespace(form *ids.Map) bool { return OwnersKind(form) == "userns" }
