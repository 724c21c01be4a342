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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

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

// PartialDir, below a layout's directory, holds the downloads that
// layout/remote keeps for a pull to resume; gc removes them.
var PartialDir = filepath.Join(StateDir, "partial")

// ownNames are the layout's own files and directories, parents first:
// none may be a symbolic link.
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

// ErrRemoved means a layout was removed while it was being opened: the
// command that created it failed and took it back (see Undo). It wraps
// ErrNotLayout.
var ErrRemoved = fmt.Errorf("%w: it was removed by the failed command that created it", ErrNotLayout)

// Layout is an open OCI image-layout directory. It is safe for concurrent
// use; Close releases the locks it holds.
type Layout struct {
	dir   string
	blobs *blob.Store

	// written records every blob this Layout put in place, for Undo.
	written Added

	mu     sync.Mutex
	gcLock *os.File // shared while this Layout may write blobs
	// created says Init made the layout (wrote its oci-layout), madeDir
	// that it made the directory too; Undo may then remove them.
	created, madeDir bool
}

type layoutMarker struct {
	Version string `json:"imageLayoutVersion"`
}

// Init creates an empty layout at dir, creating dir if needed, or opens
// the layout that is there; calling it on a directory that holds other
// files is an error. The layout it returns is held for writing (see
// Hold), and Created says whether this call made it: a command that
// fails can then take the new layout back with Undo.
//
// Concurrent Inits of one directory make one layout: the one that finds
// none under the layout's index lock creates it, the others open it.
func Init(dir string) (*Layout, error) {
	for attempt := 0; ; attempt++ {
		l, err := initLayout(dir)
		// A layout that vanished under us was taken back by the failed
		// command that made it: make it anew.
		if errors.Is(err, ErrRemoved) && attempt < 8 {
			continue
		}
		return l, err
	}
}

func initLayout(dir string) (*Layout, error) {
	l, err := Open(dir)
	if err == nil {
		if err := l.Hold(); err != nil {
			return nil, err
		}
		return l, nil
	}
	if errors.Is(err, ErrSymlink) {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	madeDir := errors.Is(err, fs.ErrNotExist)
	for _, e := range ents {
		// What an Init killed before it wrote the marker leaves behind
		// may be finished, and another Init may be making the layout
		// right now; anything else means the directory is in use.
		if !initLeftover(e.Name()) && e.Name() != LayoutFile {
			return nil, fmt.Errorf("init layout %s: %w: directory is not empty (it holds %s)", dir, ErrNotLayout, e.Name())
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	l = newLayout(dir)
	if err := l.hold(whileInit); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	lock, err := l.lockFile(indexLock, unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if hasMarker(dir) {
		// Another Init made it meanwhile (or it is a damaged layout,
		// which Open names).
		if _, err := Open(dir); err != nil {
			return nil, err
		}
		ok = true
		return l, nil
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
	// Undo removes the layout only while this record is ours: the
	// first other writer to hold the layout removes it (claim).
	if err := writeFileAtomic(filepath.Join(dir, StateDir), newRecord, []byte(procToken)); err != nil {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	// The marker goes last: a layout is recognised only once it is whole.
	marker, _ := json.Marshal(layoutMarker{Version: LayoutVersion})
	if err := writeFileAtomic(dir, LayoutFile, marker); err != nil {
		return nil, fmt.Errorf("init layout %s: %w", dir, err)
	}
	l.created, l.madeDir = true, madeDir
	ok = true
	return l, nil
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

// hasMarker reports whether dir has an oci-layout file.
func hasMarker(dir string) bool {
	_, err := os.Lstat(filepath.Join(dir, LayoutFile))
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
	return newLayout(dir), nil
}

func newLayout(dir string) *Layout {
	l := &Layout{dir: dir}
	l.blobs = blob.New(filepath.Join(dir, BlobsDir), filepath.Join(dir, StateDir, "staging"),
		blob.WithRoot(dir), blob.WithSeals(filepath.Join(dir, StateDir, "seals")), blob.WithPublished(l.written.Add))
	return l
}

// Dir is the layout's directory.
func (l *Layout) Dir() string { return l.dir }

// Blobs is the layout's blob store. Callers that write blobs through it
// directly must call Hold first so that a concurrent gc keeps them.
func (l *Layout) Blobs() *blob.Store { return l.blobs }

// Created reports whether Init made this layout rather than finding it.
func (l *Layout) Created() bool { return l.created }

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
// are never swept. Hold is idempotent. It fails with ErrRemoved when the
// layout was taken back (Undo) by the failed command that made it.
func (l *Layout) Hold() error { return l.hold(madeLayout) }

// holdWhen says whether the layout a hold is taken on is whole yet.
type holdWhen int

const (
	madeLayout holdWhen = iota // it has its oci-layout, or it was removed
	whileInit                  // Init is making it: no oci-layout yet
)

// hold takes the shared hold.
func (l *Layout) hold(when holdWhen) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gcLock != nil {
		return nil
	}
	if when == madeLayout && !hasMarker(l.dir) {
		return fmt.Errorf("layout %s: %w", l.dir, ErrRemoved)
	}
	f, err := l.lockFile(gcLock, unix.LOCK_SH)
	if err != nil {
		return err
	}
	if when == madeLayout && !hasMarker(l.dir) {
		f.Close()
		return fmt.Errorf("layout %s: %w", l.dir, ErrRemoved)
	}
	if err := l.claim(); err != nil {
		f.Close()
		return err
	}
	l.gcLock = f
	return nil
}

// Names of the lock files in StateDir.
const (
	gcLock    = "gc.lock"
	indexLock = "index.lock"
)

// openLock opens (creating it) the lock file name in the state directory.
// The layout's directory itself is never created here: when it is gone,
// the layout was removed.
func (l *Layout) openLock(name string) (*os.File, error) {
	root, err := safedir.Open(l.dir, "")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("layout %s: %w", l.dir, ErrRemoved)
		}
		return nil, fmt.Errorf("open layout %s: %w", l.dir, err)
	}
	defer root.Close()
	if err := unix.Mkdirat(int(root.Fd()), StateDir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", filepath.Join(l.dir, StateDir), err)
	}
	state, err := safedir.OpenAt(root, StateDir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("layout %s: %w", l.dir, ErrRemoved)
		}
		return nil, fmt.Errorf("open lock in layout %s: %w", l.dir, err)
	}
	defer state.Close()
	f, err := safedir.OpenAt(state, name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// The state directory was unlinked after we opened it: the
			// layout was taken back meanwhile (Undo).
			return nil, fmt.Errorf("layout %s: %w", l.dir, ErrRemoved)
		}
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

// lockFile opens the lock file name and flocks it with how. Undo removes
// lock files while it holds them, so a lock taken on a file that is no
// longer at its path is dropped and taken again on the file that is.
func (l *Layout) lockFile(name string, how int) (*os.File, error) {
	return l.lockFileCtx(context.Background(), name, how)
}

// lockFileCtx is lockFile that stops waiting when ctx is done.
func (l *Layout) lockFileCtx(ctx context.Context, name string, how int) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		f, err := l.openLock(name)
		if err != nil {
			return nil, err
		}
		if err := flockCtx(ctx, f, how); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, err
			}
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		fi, ferr := f.Stat()
		pi, perr := os.Lstat(f.Name())
		if ferr == nil && perr == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close()
		if attempt >= 8 {
			return nil, fmt.Errorf("lock %s: %w", f.Name(), ErrRemoved)
		}
	}
}

// flockRetry is flock that goes on when a signal interrupts it.
func flockRetry(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// flockCtx is flockRetry that gives up with ctx's error when ctx is
// done first. A blocked flock cannot be interrupted, so a cancellable
// wait polls, every few milliseconds at first and at most every 50 ms.
// A failed conversion of a lock this process holds may have dropped it,
// as a blocking conversion does too (flock(2)): the caller takes it back.
func flockCtx(ctx context.Context, f *os.File, how int) error {
	if ctx.Done() == nil {
		return flockRetry(f, how)
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
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
