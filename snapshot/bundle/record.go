package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
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
	// written under (snapshot.Info.Owners); records of an earlier strata
	// lack it.
	Owners *ids.Map `json:"owners,omitempty"`
	// Unpacked is when the rootfs was complete. Every file with a ctime
	// later than Unpacked has been changed since: commit only needs to
	// compare those (and look for deleted ones) against the file list.
	Unpacked time.Time `json:"unpacked"`
}

// ReadRecord reads the record of the bundle dir.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s: %w (no %s)", dir, ErrNotUnpacked, RecordFile)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("bundle %s: %w: %s: %v", dir, ErrNotUnpacked, RecordFile, err)
	}
	return &rec, nil
}

// storeRecord is where the store keeps the record of the bundle dir
// (absolute): ROOT/containers/<hash>.json, a gc root.
func storeRecord(s *snapshot.Store, dir string) string {
	h := sha256.Sum256([]byte(dir))
	return filepath.Join(s.Root(), ContainersDir, hex.EncodeToString(h[:16])+".json")
}

// writeRecord writes rec, the record of the bundle rec.Dir, in the store
// first (a gc root) and then in the bundle: a bundle is one once its
// record is there.
func writeRecord(s *snapshot.Store, rec *Record) error {
	rb, err := json.MarshalIndent(rec, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.Root(), ContainersDir), 0o700); err != nil {
		return err
	}
	if err := fsx.WriteFile(storeRecord(s, rec.Dir), rb, 0o644); err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(rec.Dir, RecordFile), rb, 0o644)
}

// addLayout remembers a layout images were unpacked from: gc keeps the
// snapshots of its images.
func addLayout(s *snapshot.Store, dir string) error {
	return updateLayouts(s, func(m map[string]bool) { m[dir] = true })
}

// updateLayouts changes the store's list of layouts with fn, under its
// lock.
func updateLayouts(s *snapshot.Store, fn func(map[string]bool)) error {
	p := filepath.Join(s.Root(), LayoutsFile)
	lf, err := os.OpenFile(p+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := fsx.Flock(lf, unix.LOCK_EX); err != nil {
		return err
	}
	list, err := readLayouts(s)
	if err != nil {
		return err
	}
	m := map[string]bool{}
	for _, d := range list {
		m[d] = true
	}
	fn(m)
	list = list[:0]
	for d := range m {
		list = append(list, d)
	}
	sort.Strings(list)
	b, _ := json.MarshalIndent(list, "", "\t")
	return fsx.WriteFile(p, b, 0o644)
}

// readLayouts reads the store's list of layouts; none yet is empty.
func readLayouts(s *snapshot.Store) ([]string, error) {
	p := filepath.Join(s.Root(), LayoutsFile)
	var list []string
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return list, nil
}

// recordOwners is the mapping a bundle's snapshots and rootfs were
// written under; for a record of an earlier strata, which did not keep
// it, it is inferred from who wrote the record, as for the snapshots
// Open moved.
func recordOwners(s *snapshot.Store, rec *Record, bundle string) *ids.Map {
	if rec.Owners != nil {
		return rec.Owners
	}
	m, err := s.WrittenUnder(filepath.Join(bundle, RecordFile))
	if err == nil {
		return m
	}
	if !rec.Rootless {
		return &ids.Map{}
	}
	return s.Options().Owners()
}

// bundleChain finds the snapshots of the chain of rec, the record of the
// bundle dir, and the mapping they were written under.
func bundleChain(s *snapshot.Store, rec *Record, dir string) (*ids.Map, []*snapshot.Info, error) {
	owners := recordOwners(s, rec, dir)
	key := snapshot.Key(rec.Driver, owners)
	chain := make([]*snapshot.Info, len(rec.Chain))
	for i, id := range rec.Chain {
		if err := id.Validate(); err != nil || id.Algorithm() != digest.SHA256 {
			return nil, nil, fmt.Errorf("bundle %s: %s: bad chain ID %q", dir, RecordFile, id)
		}
		in, err := s.Get(key + "/" + id.Encoded())
		if err != nil {
			return nil, nil, fmt.Errorf("bundle %s: layer %d: %w", dir, i+1, err)
		}
		chain[i] = in
	}
	return owners, chain, nil
}
