package layout

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/safedir"
	"golang.org/x/sys/unix"
)

// Index is a layout's index.json. Fields the image-spec does not define
// are kept in Extra and written back unchanged.
type Index struct {
	ocispec.Index
	Extra map[string]json.RawMessage `json:"-"`
}

func newIndex() *Index {
	return &Index{Index: ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}}
}

var indexKnownFields = map[string]bool{
	"schemaVersion": true, "mediaType": true, "artifactType": true,
	"manifests": true, "subject": true, "annotations": true,
}

// ParseIndex parses an image index (index.json or an index blob), keeping
// fields it does not know in Extra.
func ParseIndex(b []byte) (*Index, error) {
	idx := &Index{}
	if err := json.Unmarshal(b, &idx.Index); err != nil {
		return nil, fmt.Errorf("parse index: %w", err)
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, fmt.Errorf("parse index: %w", err)
	}
	for k, v := range all {
		if !indexKnownFields[k] {
			if idx.Extra == nil {
				idx.Extra = map[string]json.RawMessage{}
			}
			idx.Extra[k] = v
		}
	}
	if idx.SchemaVersion != 2 {
		return nil, fmt.Errorf("parse index: unsupported schemaVersion %d", idx.SchemaVersion)
	}
	for i, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("parse index: manifests[%d]: invalid digest %q: %v", i, d.Digest, err)
		}
		if d.Size < 0 {
			return nil, fmt.Errorf("parse index: manifests[%d]: negative size %d", i, d.Size)
		}
	}
	return idx, nil
}

// MarshalJSON writes the index with its extra fields.
func (idx *Index) MarshalJSON() ([]byte, error) {
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx.Index)
	if err != nil || len(idx.Extra) == 0 {
		return b, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return nil, err
	}
	for k, v := range idx.Extra {
		if _, ok := all[k]; !ok {
			all[k] = v
		}
	}
	return json.Marshal(all)
}

// MaxIndexSize is the largest index.json strata reads or writes: 8 MiB
// holds about 25,000 names (an entry with its name takes 250-350 bytes),
// far beyond any real layout, while reading and listing it stays within
// strata's 100 MB memory target (measured: `strata ls` of 25,800 names
// peaks at 91 MB; at 16 MiB a `strata tag` alone takes 115 MB). Larger
// files are refused with ErrTooLarge rather than read whole.
const MaxIndexSize = 8 << 20

// Index reads index.json.
func (l *Layout) Index() (*Index, error) {
	p := filepath.Join(l.dir, IndexFile)
	b, err := safedir.ReadFile(l.dir, IndexFile, MaxIndexSize, ErrTooLarge)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	idx, err := ParseIndex(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return idx, nil
}

// UpdateIndex reads index.json under an exclusive cross-process lock, lets
// fn change it, and atomically replaces the file with the result. If fn
// returns an error nothing is written.
func (l *Layout) UpdateIndex(fn func(*Index) error) error {
	if err := l.Hold(); err != nil {
		return err
	}
	return l.rewriteIndex(fn)
}

// rewriteIndex is UpdateIndex for a caller that holds the layout already
// (gc holds it exclusively).
func (l *Layout) rewriteIndex(fn func(*Index) error) error {
	lock, err := l.lockFile(indexLock, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close()
	idx, err := l.Index()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	if len(b) > MaxIndexSize {
		// Written, it could not be read back.
		return fmt.Errorf("write %s: %w: the new index would be %d bytes, more than the limit of %d", filepath.Join(l.dir, IndexFile), ErrTooLarge, len(b), MaxIndexSize)
	}
	if err := writeFileAtomic(l.dir, IndexFile, b); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(l.dir, IndexFile), err)
	}
	return nil
}
