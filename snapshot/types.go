package snapshot

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// IDRange maps Size IDs starting at ContainerID onto host IDs starting at
// HostID, as in /proc/PID/uid_map.
type IDRange struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

// IDMap is a user-namespace mapping of user and group IDs.
type IDMap struct {
	UIDs []IDRange `json:"uids,omitempty"`
	GIDs []IDRange `json:"gids,omitempty"`
}

// ParseIDRange parses CONTAINERID:HOSTID:SIZE.
func ParseIDRange(s string) (IDRange, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return IDRange{}, fmt.Errorf("id map %q: want CONTAINERID:HOSTID:SIZE", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return IDRange{}, fmt.Errorf("id map %q: %q is not a 32-bit unsigned number", s, p)
		}
		v[i] = uint32(n)
	}
	r := IDRange{ContainerID: v[0], HostID: v[1], Size: v[2]}
	if r.Size == 0 {
		return IDRange{}, fmt.Errorf("id map %q: size is 0", s)
	}
	if uint64(r.ContainerID)+uint64(r.Size) > 1<<32 || uint64(r.HostID)+uint64(r.Size) > 1<<32 {
		return IDRange{}, fmt.Errorf("id map %q: range overflows 32 bits", s)
	}
	return r, nil
}

// Empty says whether m maps nothing (the identity).
func (m *IDMap) Empty() bool { return m == nil || (len(m.UIDs) == 0 && len(m.GIDs) == 0) }

func shift(rs []IDRange, id int, toHost bool) (int, error) {
	if len(rs) == 0 {
		return id, nil
	}
	for _, r := range rs {
		from, to := r.ContainerID, r.HostID
		if !toHost {
			from, to = to, from
		}
		if id >= 0 && uint64(id) >= uint64(from) && uint64(id) < uint64(from)+uint64(r.Size) {
			return int(uint64(to) + uint64(id) - uint64(from)), nil
		}
	}
	return 0, fmt.Errorf("id %d is outside the id map", id)
}

// ToHost maps an image's uid and gid to the host's.
func (m *IDMap) ToHost(uid, gid int) (int, int, error) {
	if m.Empty() {
		return uid, gid, nil
	}
	u, err := shift(m.UIDs, uid, true)
	if err != nil {
		return 0, 0, fmt.Errorf("uid: %w", err)
	}
	g, err := shift(m.GIDs, gid, true)
	if err != nil {
		return 0, 0, fmt.Errorf("gid: %w", err)
	}
	return u, g, nil
}

// ToContainer maps host IDs back to the image's (commit uses it).
func (m *IDMap) ToContainer(uid, gid int) (int, int, error) {
	if m.Empty() {
		return uid, gid, nil
	}
	u, err := shift(m.UIDs, uid, false)
	if err != nil {
		return 0, 0, fmt.Errorf("uid: %w", err)
	}
	g, err := shift(m.GIDs, gid, false)
	if err != nil {
		return 0, 0, fmt.Errorf("gid: %w", err)
	}
	return u, g, nil
}

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

// Entry is one file of a snapshot's merged tree, as the image defines it.
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
	// Placeholder is set when fs/ holds an empty regular file in place of
	// this device node (rootless extraction): commit must not see a change.
	Placeholder bool `json:"ph,omitempty"`
}

// Record is what unpack writes to DIR/.strata-unpack.json and to the
// store's containers/ directory.
type Record struct {
	// Dir is the bundle's absolute path.
	Dir    string `json:"dir"`
	Store  string `json:"store"`
	Driver string `json:"driver"`
	// Layout and Ref name the image as the user gave it.
	Layout   string        `json:"layout"`
	Ref      string        `json:"ref,omitempty"`
	Manifest digest.Digest `json:"manifest"`
	Config   digest.Digest `json:"config"`
	// Chain is the chain IDs of the image's layers, base first; the last
	// one is the snapshot the rootfs was made from (commit's parent).
	Chain    []digest.Digest `json:"chain"`
	Rootless bool            `json:"rootless,omitempty"`
	IDMap    *IDMap          `json:"idMap,omitempty"`
	// Owners is the ID mapping the bundle's snapshots and rootfs were
	// written under (Info.Owners); records of an earlier strata lack it.
	Owners *IDMap `json:"owners,omitempty"`
	// Unpacked is when the rootfs was complete. Every file with a ctime
	// later than Unpacked has been changed since: commit only needs to
	// compare those (and look for deleted ones) against the file list.
	Unpacked time.Time `json:"unpacked"`
}
