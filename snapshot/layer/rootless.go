package layer

import (
	"errors"
	"fmt"
)

// RootlessXattr keeps the owner an unprivileged extraction could not
// apply, in the rootless-containers protobuf encoding umoci uses.
const RootlessXattr = "user.rootlesscontainers"

// rootlessNoopID in a RootlessXattr field means "the file's real owner",
// which in a rootless container is its root: umoci writes it for the 0 half
// of an owner like 0:42, and strata writes the same bytes.
const rootlessNoopID = 1<<32 - 1

// EncodeRootless encodes an owner as the rootless-containers protobuf
// message Resource{uint32 uid = 1; uint32 gid = 2}. 0:0 is no xattr at
// all and a 0 beside a non-zero id is rootlessNoopID, byte for byte as
// umoci writes them.
func EncodeRootless(uid, gid int) []byte {
	if uid == 0 && gid == 0 {
		return nil
	}
	if uid == 0 {
		uid = rootlessNoopID
	}
	if gid == 0 {
		gid = rootlessNoopID
	}
	b := append([]byte{0x08}, appendVarint(nil, uint64(uint32(uid)))...)
	b = append(b, 0x10)
	return appendVarint(b, uint64(uint32(gid)))
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// DecodeRootless reads a RootlessXattr value; unknown fields are skipped
// as protobuf requires.
func DecodeRootless(b []byte) (uid, gid int, err error) {
	for len(b) > 0 {
		key, n := readVarint(b)
		if n <= 0 {
			return 0, 0, errors.New("rootless xattr: bad field key")
		}
		b = b[n:]
		field, wire := key>>3, key&7
		switch wire {
		case 0:
			v, n := readVarint(b)
			if n <= 0 {
				return 0, 0, errors.New("rootless xattr: bad varint")
			}
			b = b[n:]
			switch {
			case field == 1 && uint32(v) != rootlessNoopID:
				uid = int(uint32(v))
			case field == 2 && uint32(v) != rootlessNoopID:
				gid = int(uint32(v))
			}
		case 2:
			l, n := readVarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return 0, 0, errors.New("rootless xattr: bad length")
			}
			b = b[n+int(l):]
		case 5:
			if len(b) < 4 {
				return 0, 0, errors.New("rootless xattr: truncated")
			}
			b = b[4:]
		case 1:
			if len(b) < 8 {
				return 0, 0, errors.New("rootless xattr: truncated")
			}
			b = b[8:]
		default:
			return 0, 0, fmt.Errorf("rootless xattr: wire type %d", wire)
		}
	}
	return uid, gid, nil
}

func readVarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
