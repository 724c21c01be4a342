package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// Store is a snapshot root. It is safe for concurrent use by several
// processes: snapshots appear by rename only when complete, and gc takes
// the store lock exclusively while every unpack holds it shared.
type Store struct {
	root string
	lock *os.File
	opts StoreOptions
}

// ErrNoDefaultRoot means a rootless caller has no home directory (and
// no data directory) to keep its store in.
var ErrNoDefaultRoot = errors.New("no default snapshot store: no home directory")

// DefaultRoot is /var/lib/strata for root, and for other users
// DATAHOME/strata, or HOME/.local/share/strata when dataHome is not an
// absolute path: the caller passes $XDG_DATA_HOME and the user's home
// directory. rootless says which the caller is (root of strata's own
// user namespace is still the user).
func DefaultRoot(rootless bool, dataHome, home string) (string, error) {
	if !rootless {
		return "/var/lib/strata", nil
	}
	if dataHome != "" && filepath.IsAbs(dataHome) {
		return filepath.Join(dataHome, "strata"), nil
	}
	if home == "" {
		return "", ErrNoDefaultRoot
	}
	return filepath.Join(home, ".local", "share", "strata"), nil
}

// Open opens the store at root for a process described by o, creating
// the store if needed, and takes the store lock shared; Close releases
// it. A store laid out by an earlier strata (every snapshot directly in
// ROOT/snapshots) is moved to the current layout first, under the lock
// held exclusively.
func Open(root string, o StoreOptions) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, SnapshotsDir), filepath.Join(abs, TmpDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("snapshot root %s: %w", root, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(abs, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	if err := fsx.Flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot root %s: lock: %w", root, err)
	}
	s := &Store{root: abs, lock: f, opts: o}
	if err := s.migrate(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the store lock.
func (s *Store) Close() error {
	if s.lock == nil {
		return nil
	}
	err := s.lock.Close()
	s.lock = nil
	return err
}

// exclusive upgrades the store lock for gc and removal, and returns a
// function that downgrades it again.
func (s *Store) exclusive() (func(), error) {
	if err := fsx.Flock(s.lock, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("snapshot root %s: lock: %w", s.root, err)
	}
	return func() { _ = fsx.Flock(s.lock, unix.LOCK_SH) }, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Options are the options the store was opened with.
func (s *Store) Options() StoreOptions { return s.opts }

// dir is the directory of the snapshot with the given chain ID among the
// snapshots of key (see ownersKey).
func (s *Store) dir(key string, chainID digest.Digest) string {
	return filepath.Join(s.root, SnapshotsDir, key, chainID.Encoded())
}

// Has says whether the store holds d's snapshot of chainID.
func (s *Store) Has(d Driver, chainID digest.Digest) bool {
	_, err := os.Stat(s.dir(Key(d.Name(), d.Owners()), chainID))
	return err == nil
}

// isHex says whether name is a full sha256 hex: a snapshot directory
// (key directories are driver names, never that).
func isHex(name string) bool {
	if len(name) != 64 {
		return false
	}
	for _, c := range name {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Get reads a snapshot's meta.json. id is a chain ID, its hex or a unique
// prefix of at least 12 hex digits, optionally after its store key and a
// slash ("overlay/<hex>", as Info.Name gives it) to pick one driver's
// snapshot where several drivers hold the same chain.
func (s *Store) Get(id string) (*Info, error) {
	key, hex, keyed := strings.Cut(id, "/")
	if !keyed {
		key, hex = "", id
	}
	hex = strings.TrimPrefix(hex, "sha256:")
	if hex == "" || strings.ContainsAny(hex, "/.\\") || (keyed && (key == "" || strings.ContainsAny(key, "/\\") || key[0] == '.')) {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	if len(hex) < 12 || len(hex) > 64 {
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	}
	if keyed && isHex(hex) {
		return readInfo(filepath.Join(s.root, SnapshotsDir, key, hex))
	}
	infos, err := s.List()
	if err != nil {
		return nil, err
	}
	var found []*Info
	for _, in := range infos {
		if strings.HasPrefix(in.ID, hex) && (!keyed || in.key == key) {
			found = append(found, in)
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, in := range found {
		names = append(names, in.Name())
	}
	return nil, fmt.Errorf("snapshot %s names %d snapshots: %s (give one of these)", id, len(found), strings.Join(names, ", "))
}

// get reads the snapshot of chainID among key's.
func (s *Store) get(key string, chainID digest.Digest) (*Info, error) {
	return readInfo(s.dir(key, chainID))
}

func readInfo(dir string) (*Info, error) {
	b, err := os.ReadFile(filepath.Join(dir, MetaFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("snapshot %s: %w", filepath.Base(dir), ErrNotFound)
		}
		return nil, fmt.Errorf("snapshot %s: %w", filepath.Base(dir), err)
	}
	var in Info
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("snapshot %s: %s: %w", filepath.Base(dir), MetaFile, err)
	}
	in.Dir = dir
	in.key = filepath.Base(filepath.Dir(dir))
	return &in, nil
}

// keys lists the key directories of ROOT/snapshots.
func (s *Store) keys() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", s.root, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && !isHex(e.Name()) && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// List returns every complete snapshot of every driver, sorted by ID,
// then store key.
func (s *Store) List() ([]*Info, error) {
	keys, err := s.keys()
	if err != nil {
		return nil, err
	}
	var out []*Info
	for _, k := range keys {
		ents, err := os.ReadDir(filepath.Join(s.root, SnapshotsDir, k))
		if err != nil {
			return nil, fmt.Errorf("list snapshots in %s: %w", s.root, err)
		}
		for _, e := range ents {
			if !e.IsDir() || !isHex(e.Name()) {
				continue
			}
			in, err := readInfo(filepath.Join(s.root, SnapshotsDir, k, e.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, in)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].key < out[j].key
	})
	return out, nil
}

// Find returns the snapshots of chainID, one per driver and ID mapping
// that holds it.
func (s *Store) Find(chainID digest.Digest) ([]*Info, error) {
	if err := chainID.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", chainID, err)
	}
	keys, err := s.keys()
	if err != nil {
		return nil, err
	}
	var out []*Info
	for _, k := range keys {
		in, err := s.get(k, chainID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}
