// Package layout reads and writes OCI image-layout directories: the
// oci-layout marker, index.json with its named references, and the
// manifests, indexes and configs in the blob store. It also owns gc and
// fsck of a layout.
//
// Every change to index.json is made under an exclusive cross-process lock
// and published by an atomic rename, so concurrent strata processes never
// lose each other's updates and a crash leaves the old or the new index.
package layout

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/safedir"
	"golang.org/x/sys/unix"
)

// File and directory names inside a layout.
const (
	LayoutFile = "oci-layout"
	IndexFile  = "index.json"
	BlobsDir   = "blobs"
	// StateDir holds strata's own state: the blob staging area and lock
	// files. Other tools ignore it, as the image-layout spec allows.
	StateDir = ".strata"
	// LayoutVersion is the imageLayoutVersion strata writes.
	LayoutVersion = "1.0.0"
)

// ErrNotLayout means a directory is not an OCI image layout.
var ErrNotLayout = errors.New("not an OCI image layout")

// ErrSymlink means a layout's own file or directory (oci-layout,
// index.json, blobs/, blobs/sha256, .strata/ and the directories in it) is
// a symbolic link. strata refuses such a layout rather than read, write or
// delete through the link; the error is a *blob.LinkError naming it.
var ErrSymlink = blob.ErrSymlink

// ErrTooLarge means a document read whole (index.json, a manifest, an
// index or a config) is larger than its limit: MaxIndexSize,
// MaxManifestSize or MaxConfigSize.
var ErrTooLarge = blob.ErrTooLarge

// maxMarkerSize bounds what is read of oci-layout, which holds one small
// JSON object.
const maxMarkerSize = 64 << 10

// ownNames are the layout's own files and directories, parents first:
// none may be a symbolic link. (Partial downloads are layout/remote's.)
var ownNames = []string{
	LayoutFile, IndexFile,
	BlobsDir, filepath.Join(BlobsDir, "sha256"), filepath.Join(BlobsDir, "sha384"), filepath.Join(BlobsDir, "sha512"),
	StateDir,
	filepath.Join(StateDir, "staging"),
	filepath.Join(StateDir, "seals"),
	filepath.Join(StateDir, "seals", "sha256"), filepath.Join(StateDir, "seals", "sha384"), filepath.Join(StateDir, "seals", "sha512"),
	filepath.Join(StateDir, "partial"),
	filepath.Join(StateDir, "partial", "sha256"), filepath.Join(StateDir, "partial", "sha384"), filepath.Join(StateDir, "partial", "sha512"),
	filepath.Join(StateDir, "gc.lock"), filepath.Join(StateDir, "index.lock"),
}

// Layout is an open OCI image-layout directory. It is safe for concurrent
// use; Close releases the locks it holds.
type Layout struct {
	dir   string
	blobs *blob.Store

	mu     sync.Mutex
	gcLock *os.File // shared while this Layout may write blobs
}

type layoutMarker struct {
	Version string `json:"imageLayoutVersion"`
}

// Init creates an empty layout at dir, creating dir if needed. Calling Init
// on an existing layout opens it; calling it on a directory that holds
// other files is an error.
func Init(dir string) (*Layout, error) {
	l, err := Open(dir)
	if err == nil {
		return l, nil
	}
	if errors.Is(err, ErrSymlink) {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	for _, e := range ents {
		// What an Init killed before it wrote the marker leaves behind
		// may be finished; anything else means the directory is in use.
		if !initLeftover(e.Name()) {
			return nil, fmt.Errorf("init layout %s: %w: directory is not empty (it holds %s)", dir, ErrNotLayout, e.Name())
		}
	}
	bd, err := safedir.MkdirAll(dir, BlobsDir, 0o755)
	if err != nil {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	bd.Close()
	if !hasValidIndex(dir) {
		idx, _ := json.Marshal(newIndex())
		if err := writeFileAtomic(dir, IndexFile, idx); err != nil {
			return nil, fmt.Errorf("init layout %s: %w", dir, err)
		}
	}
	// The marker goes last: a layout is recognised only once it is whole.
	marker, _ := json.Marshal(layoutMarker{Version: LayoutVersion})
	if err := writeFileAtomic(dir, LayoutFile, marker); err != nil {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	return Open(dir)
}

// initLeftover reports whether name is something Init itself creates.
func initLeftover(name string) bool {
	switch name {
	case BlobsDir, IndexFile, StateDir:
		return true
	}
	return strings.HasPrefix(name, "."+IndexFile+".tmp-") || strings.HasPrefix(name, "."+LayoutFile+".tmp-")
}

func hasValidIndex(dir string) bool {
	b, err := safedir.ReadFile(dir, IndexFile, MaxIndexSize, ErrTooLarge)
	if err != nil {
		return false
	}
	_, err = ParseIndex(b)
	return err == nil
}

// Open opens the existing layout at dir. dir itself may be a symbolic
// link (it is the caller's choice); a layout whose own files or
// directories are links is refused with an error wrapping ErrSymlink.
func Open(dir string) (*Layout, error) {
	b, err := safedir.ReadFile(dir, LayoutFile, maxMarkerSize, ErrTooLarge)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(dir); serr != nil {
				return nil, fmt.Errorf("open layout %s: %w", dir, serr)
			}
			return nil, fmt.Errorf("open layout %s: %w: no %s file", dir, ErrNotLayout, LayoutFile)
		}
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	var m layoutMarker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("open layout %s: %w: %s: %v", dir, ErrNotLayout, LayoutFile, err)
	}
	if m.Version == "" {
		return nil, fmt.Errorf("open layout %s: %w: %s has no imageLayoutVersion", dir, ErrNotLayout, LayoutFile)
	}
	if err := safedir.CheckNoLinks(dir, ownNames...); err != nil {
		return nil, fmt.Errorf("open layout %s: %w", dir, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, IndexFile)); err != nil {
		return nil, fmt.Errorf("open layout %s: %w: %v", dir, ErrNotLayout, err)
	}
	return &Layout{
		dir: dir,
		blobs: blob.New(filepath.Join(dir, BlobsDir), filepath.Join(dir, StateDir, "staging"),
			blob.WithRoot(dir), blob.WithSeals(filepath.Join(dir, StateDir, "seals"))),
	}, nil
}

// Dir is the layout's directory.
func (l *Layout) Dir() string { return l.dir }

// Blobs is the layout's blob store. Callers that write blobs through it
// directly must call Hold first so that a concurrent gc keeps them.
func (l *Layout) Blobs() *blob.Store { return l.blobs }

// Close releases the locks the layout holds.
func (l *Layout) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gcLock != nil {
		err := l.gcLock.Close()
		l.gcLock = nil
		return err
	}
	return nil
}

// Hold takes a shared hold on the layout that keeps gc in any process from
// running until this Layout is closed. Every write path takes it before its
// first blob write, so that blobs written but not yet named in index.json
// are never swept. Hold is idempotent.
func (l *Layout) Hold() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gcLock != nil {
		return nil
	}
	f, err := l.openLock("gc.lock")
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		return fmt.Errorf("lock layout %s: %w", l.dir, err)
	}
	l.gcLock = f
	return nil
}

func (l *Layout) openLock(name string) (*os.File, error) {
	f, err := safedir.OpenFile(l.dir, filepath.Join(StateDir, name), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock in layout %s: %w", l.dir, err)
	}
	return f, nil
}

// MakeStateDir creates the layout's state directory (StateDir) when it is
// missing, following no symbolic link, and returns its path, for callers
// that keep private working files there (archive staging, conversions).
func (l *Layout) MakeStateDir() (string, error) {
	d, err := safedir.MkdirAll(l.dir, StateDir, 0o755)
	if err != nil {
		return "", fmt.Errorf("layout %s: %w", l.dir, err)
	}
	d.Close()
	return filepath.Join(l.dir, StateDir), nil
}

// writeFileAtomic replaces dir/name with data: temp file, fsync, rename,
// fsync of dir.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}
