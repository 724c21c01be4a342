package snapshot

import (
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-oci/strata/snapshot/ids"
)

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
	IDMap    *ids.Map        `json:"idMap,omitempty"`
	// Owners is the ID mapping the bundle's snapshots and rootfs were
	// written under (Info.Owners); records of an earlier strata lack it.
	Owners *ids.Map `json:"owners,omitempty"`
	// Unpacked is when the rootfs was complete. Every file with a ctime
	// later than Unpacked has been changed since: commit only needs to
	// compare those (and look for deleted ones) against the file list.
	Unpacked time.Time `json:"unpacked"`
}
