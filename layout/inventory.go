package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// MediaTypeInventory is the media type of an inventory file
// (`strata inventory`).
const MediaTypeInventory = "application/vnd.strata.inventory.v1+json"

// MaxInventorySize bounds an inventory file read whole: some 80 bytes a
// blob, so room for about 800,000 blobs.
const MaxInventorySize = 64 << 20

// ErrInvalidInventory means an inventory file does not parse or is not
// one.
var ErrInvalidInventory = errors.New("invalid inventory")

// Inventory is what a layout holds, as a far side of an air gap tells the
// near side: the digest and size of every blob its images reach, and its
// names. `strata save --since` leaves out of an archive the blobs an
// inventory lists (a delta bundle).
type Inventory struct {
	MediaType string `json:"mediaType"`
	// Blobs maps each blob's digest to its size.
	Blobs map[digest.Digest]int64 `json:"blobs"`
	// Names maps each name of index.json to the digest it names.
	Names map[string]digest.Digest `json:"names,omitempty"`
}

// NewInventory returns an empty inventory.
func NewInventory() *Inventory {
	return &Inventory{MediaType: MediaTypeInventory, Blobs: map[digest.Digest]int64{}}
}

// Has says whether the inventory lists blob d of size bytes (any size
// when size < 0).
func (inv *Inventory) Has(d digest.Digest, size int64) bool {
	if inv == nil {
		return false
	}
	s, ok := inv.Blobs[d]
	return ok && (size < 0 || s == size)
}

// Add lists blob d of size bytes.
func (inv *Inventory) Add(d digest.Digest, size int64) { inv.Blobs[d] = size }

// Inventory lists the blobs every image of index.json reaches (those gc
// keeps) that are present, with their sizes, and the layout's names.
func (l *Layout) Inventory(ctx context.Context) (*Inventory, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	inv := NewInventory()
	for _, root := range idx.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n := root.Annotations[AnnotationRefName]; n != "" {
			if inv.Names == nil {
				inv.Names = map[string]digest.Digest{}
			}
			inv.Names[n] = root.Digest
		}
		err := l.Walk(root, func(d ocispec.Descriptor, _ []byte) error {
			if l.blobs.Has(d.Digest, d.Size) {
				inv.Add(d.Digest, d.Size)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("inventory of %s: %w", l.dir, err)
		}
	}
	return inv, nil
}

// ParseInventory reads an inventory file, refusing one over
// MaxInventorySize, of another media type, or with invalid digests or
// sizes.
func ParseInventory(b []byte) (*Inventory, error) {
	if len(b) > MaxInventorySize {
		return nil, fmt.Errorf("%w: %d bytes, more than the limit of %d: %w", ErrInvalidInventory, len(b), MaxInventorySize, ErrTooLarge)
	}
	var inv Inventory
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&inv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidInventory, err)
	}
	if inv.MediaType != MediaTypeInventory {
		return nil, fmt.Errorf("%w: media type %q, want %s", ErrInvalidInventory, inv.MediaType, MediaTypeInventory)
	}
	if inv.Blobs == nil {
		inv.Blobs = map[digest.Digest]int64{}
	}
	for d, s := range inv.Blobs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("%w: blob %q: %v", ErrInvalidInventory, d, err)
		}
		if s < 0 {
			return nil, fmt.Errorf("%w: blob %s: size %d", ErrInvalidInventory, d, s)
		}
	}
	for n, d := range inv.Names {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("%w: name %q: %v", ErrInvalidInventory, n, err)
		}
	}
	return &inv, nil
}
