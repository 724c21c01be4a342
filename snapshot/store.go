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
	"github.com/strata-oci/strata/internal/userns"
	"golang.org/x/sys/unix"
)

// Store is a snapshot root. It is safe for concurrent use by several
// processes: snapshots appear by rename only when complete, and gc takes
// the store lock exclusively while every unpack holds it shared.
type Store struct {
	root string
	lock *os.File
}

// DefaultRoot is /var/lib/strata for root and $XDG_DATA_HOME/strata
// (~/.local/share/strata) for other users.
func DefaultRoot() (string, error) {
	// Root of strata's own user namespace is still the calling user.
	if os.Geteuid() == 0 && !userns.Entered() {
		return "/var/lib/strata", nil
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "strata"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("snapshot root: %w (use --root)", err)
	}
	return filepath.Join(home, ".local", "share", "strata"), nil
}

// Open opens the store at root, creating it if needed, and takes the
// store lock shared; Close releases it.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, SnapshotsDir), filepath.Join(abs, TmpDir), filepath.Join(abs, ContainersDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("snapshot root %s: %w", root, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(abs, LockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	if err := flock(f, unix.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("snapshot root %s: lock: %w", root, err)
	}
	return &Store{root: abs, lock: f}, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			return err
		}
	}
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
	if err := flock(s.lock, unix.LOCK_EX); err != nil {
		return nil, fmt.Errorf("snapshot root %s: lock: %w", s.root, err)
	}
	return func() { _ = flock(s.lock, unix.LOCK_SH) }, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

// Path is the directory of the snapshot with the given chain ID.
func (s *Store) Path(chainID digest.Digest) string {
	return filepath.Join(s.root, SnapshotsDir, chainID.Encoded())
}

// Get reads a snapshot's meta.json. id is a chain ID, its hex or a unique
// prefix of at least 12 hex digits.
func (s *Store) Get(id string) (*Info, error) {
	hex := strings.TrimPrefix(id, "sha256:")
	if hex == "" || strings.ContainsAny(hex, "/.\\") {
		return nil, fmt.Errorf("snapshot %q: %w", id, ErrNotFound)
	}
	dir := filepath.Join(s.root, SnapshotsDir, hex)
	if _, err := os.Stat(dir); err != nil {
		if len(hex) < 12 || len(hex) >= 64 {
			return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		}
		infos, err := s.List()
		if err != nil {
			return nil, err
		}
		var found []*Info
		for _, in := range infos {
			if strings.HasPrefix(in.ID, hex) {
				found = append(found, in)
			}
		}
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		case 1:
			return found[0], nil
		}
		return nil, fmt.Errorf("snapshot %s: prefix names %d snapshots", id, len(found))
	}
	return readInfo(dir)
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
	return &in, nil
}

// List returns every complete snapshot, sorted by ID.
func (s *Store) List() ([]*Info, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, SnapshotsDir))
	if err != nil {
		return nil, fmt.Errorf("list snapshots in %s: %w", s.root, err)
	}
	var out []*Info
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		in, err := readInfo(filepath.Join(s.root, SnapshotsDir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
