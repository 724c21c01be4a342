// Package ids maps user and group IDs between an image and the host, as
// a user namespace's uid_map and gid_map do: parsing and checking
// mappings, shifting IDs through them and composing two of them. It is
// pure arithmetic: it reads nothing of the process or the system.
package ids

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Range maps Size IDs starting at ContainerID onto host IDs starting at
// HostID, as a line of /proc/PID/uid_map does.
type Range struct {
	ContainerID uint32 `json:"containerID"`
	HostID      uint32 `json:"hostID"`
	Size        uint32 `json:"size"`
}

// Map is a user-namespace mapping of user and group IDs. A nil or empty
// Map is the identity.
type Map struct {
	UIDs []Range `json:"uids,omitempty"`
	GIDs []Range `json:"gids,omitempty"`
}

// ErrInvalid means an id map cannot be a user namespace's mapping.
var ErrInvalid = errors.New("invalid id map")

// maxRanges is the most lines the kernel takes in a uid_map or gid_map.
const maxRanges = 340

// ParseRange parses CONTAINERID:HOSTID:SIZE.
func ParseRange(s string) (Range, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Range{}, fmt.Errorf("id map %q: want CONTAINERID:HOSTID:SIZE", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return Range{}, fmt.Errorf("id map %q: %q is not a 32-bit unsigned number", s, p)
		}
		v[i] = uint32(n)
	}
	r := Range{ContainerID: v[0], HostID: v[1], Size: v[2]}
	if r.Size == 0 {
		return Range{}, fmt.Errorf("id map %q: size is 0", s)
	}
	if uint64(r.ContainerID)+uint64(r.Size) > 1<<32 || uint64(r.HostID)+uint64(r.Size) > 1<<32 {
		return Range{}, fmt.Errorf("id map %q: range overflows 32 bits", s)
	}
	return r, nil
}

// ValidateRanges checks that rs could be written to a uid_map or
// gid_map: no two ranges overlap on either side (a shifted ID must shift
// back to one image ID), and at most 340 of them.
func ValidateRanges(rs []Range) error {
	if len(rs) > maxRanges {
		return fmt.Errorf("%w: %d ranges, the kernel takes at most %d", ErrInvalid, len(rs), maxRanges)
	}
	overlap := func(a, b uint32, size, bsize uint32) bool {
		return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(size)
	}
	for i, a := range rs {
		if a.Size == 0 {
			return fmt.Errorf("%w: range %d:%d:%d is empty", ErrInvalid, a.ContainerID, a.HostID, a.Size)
		}
		if uint64(a.ContainerID)+uint64(a.Size) > 1<<32 || uint64(a.HostID)+uint64(a.Size) > 1<<32 {
			return fmt.Errorf("%w: range %d:%d:%d overflows 32 bits", ErrInvalid, a.ContainerID, a.HostID, a.Size)
		}
		for _, b := range rs[:i] {
			if overlap(a.ContainerID, b.ContainerID, a.Size, b.Size) {
				return fmt.Errorf("%w: ranges %d:%d:%d and %d:%d:%d map the same container IDs", ErrInvalid, b.ContainerID, b.HostID, b.Size, a.ContainerID, a.HostID, a.Size)
			}
			if overlap(a.HostID, b.HostID, a.Size, b.Size) {
				return fmt.Errorf("%w: ranges %d:%d:%d and %d:%d:%d map to the same host IDs", ErrInvalid, b.ContainerID, b.HostID, b.Size, a.ContainerID, a.HostID, a.Size)
			}
		}
	}
	return nil
}

// Validate checks both halves of m with ValidateRanges.
func (m *Map) Validate() error {
	if m == nil {
		return nil
	}
	if err := ValidateRanges(m.UIDs); err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	if err := ValidateRanges(m.GIDs); err != nil {
		return fmt.Errorf("gid map: %w", err)
	}
	return nil
}

// Empty says whether m maps nothing (the identity).
func (m *Map) Empty() bool { return m == nil || (len(m.UIDs) == 0 && len(m.GIDs) == 0) }

// hostID maps id through rs, container side to host side; no ranges at
// all is the identity.
func hostID(rs []Range, id int) (int, error) { return shift(rs, id, hostward) }

// ContainerID maps id back through rs, host side to container side; no
// ranges at all is the identity.
func ContainerID(rs []Range, id int) (int, error) { return shift(rs, id, containerward) }

type direction bool

const (
	hostward      direction = true
	containerward direction = false
)

func shift(rs []Range, id int, dir direction) (int, error) {
	if len(rs) == 0 {
		return id, nil
	}
	for _, r := range rs {
		from, to := r.ContainerID, r.HostID
		if dir == containerward {
			from, to = to, from
		}
		if id >= 0 && uint64(id) >= uint64(from) && uint64(id) < uint64(from)+uint64(r.Size) {
			return int(uint64(to) + uint64(id) - uint64(from)), nil
		}
	}
	return 0, fmt.Errorf("id %d is outside the id map", id)
}

// Lookup maps id through rs (container side to host side); ok is false
// when rs is empty or does not map id.
func Lookup(rs []Range, id int) (int, bool) {
	v, err := hostID(rs, id)
	if err != nil || len(rs) == 0 {
		return 0, false
	}
	return v, true
}

// Reverse maps id back through rs (host side to container side); ok is
// false when rs is empty or does not map id.
func Reverse(rs []Range, id int) (int, bool) {
	v, err := ContainerID(rs, id)
	if err != nil || len(rs) == 0 {
		return 0, false
	}
	return v, true
}

// ToHost maps an image's uid and gid to the host's.
func (m *Map) ToHost(uid, gid int) (int, int, error) { return m.shiftBoth(uid, gid, hostward) }

// ToContainer maps host IDs back to the image's (commit uses it).
func (m *Map) ToContainer(uid, gid int) (int, int, error) {
	return m.shiftBoth(uid, gid, containerward)
}

func (m *Map) shiftBoth(uid, gid int, dir direction) (int, int, error) {
	if m.Empty() {
		return uid, gid, nil
	}
	u, err := shift(m.UIDs, uid, dir)
	if err != nil {
		return 0, 0, fmt.Errorf("uid: %w", err)
	}
	g, err := shift(m.GIDs, gid, dir)
	if err != nil {
		return 0, 0, fmt.Errorf("gid: %w", err)
	}
	return u, g, nil
}

// Clone copies m (nil stays nil).
func (m *Map) Clone() *Map {
	if m == nil {
		return nil
	}
	return &Map{UIDs: append([]Range(nil), m.UIDs...), GIDs: append([]Range(nil), m.GIDs...)}
}

// String is the mapping as uid_map lines would give it, on one line:
// "uids 0:1000:1,1:100000:65536 gids ...", or "identity".
func (m *Map) String() string {
	if m.Empty() {
		return "identity"
	}
	f := func(rs []Range) string {
		var parts []string
		for _, r := range rs {
			parts = append(parts, strconv.FormatUint(uint64(r.ContainerID), 10)+":"+strconv.FormatUint(uint64(r.HostID), 10)+":"+strconv.FormatUint(uint64(r.Size), 10))
		}
		return strings.Join(parts, ",")
	}
	return "uids " + f(m.UIDs) + " gids " + f(m.GIDs)
}

// Same compares two mappings range by range; nil and empty are the same.
func Same(a, b *Map) bool {
	if a.Empty() || b.Empty() {
		return a.Empty() == b.Empty()
	}
	eq := func(x, y []Range) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return eq(a.UIDs, b.UIDs) && eq(a.GIDs, b.GIDs)
}

// Count is the number of IDs rs maps.
func Count(rs []Range) uint64 {
	var n uint64
	for _, r := range rs {
		n += uint64(r.Size)
	}
	return n
}

// Compose turns image→host ranges into image→view ranges through view
// (view→host); every host ID of form must be one the view maps.
func Compose(form, view []Range) ([]Range, error) {
	var out []Range
	for _, f := range form {
		covered := uint64(0)
		for _, v := range view {
			lo := max(uint64(f.HostID), uint64(v.HostID))
			hi := min(uint64(f.HostID)+uint64(f.Size), uint64(v.HostID)+uint64(v.Size))
			if lo >= hi {
				continue
			}
			out = append(out, Range{
				ContainerID: uint32(uint64(f.ContainerID) + lo - uint64(f.HostID)),
				HostID:      uint32(uint64(v.ContainerID) + lo - uint64(v.HostID)),
				Size:        uint32(hi - lo),
			})
			covered += hi - lo
		}
		if covered != uint64(f.Size) {
			return nil, fmt.Errorf("host IDs %d-%d are not all mapped", f.HostID, uint64(f.HostID)+uint64(f.Size)-1)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ContainerID < out[j].ContainerID })
	return out, nil
}
