// Package contextdir reads a build context: a directory, filtered by its
// ignore file (Containerfile.dockerignore beside the Containerfile, else
// .containerignore, else .dockerignore) with Docker's pattern rules
// (github.com/moby/patternmatcher), every name resolved inside the
// directory as a container would resolve it, and the digest of what a
// COPY reads from it.
package contextdir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// ErrNotFound means a source names nothing in the context, or only what
// the ignore file excludes.
var ErrNotFound = errors.New("not found in the build context")

// ErrOutside means a source climbs out of the context with "..": Docker
// refuses it as "forbidden path outside the build context".
var ErrOutside = errors.New("outside the build context")

// IgnoreFiles are the ignore files looked for in the context, in order,
// after the Containerfile's own (NAME.dockerignore beside it).
var IgnoreFiles = []string{".containerignore", ".dockerignore"}

// Dir is a build context.
type Dir struct {
	root string
	t    *fsx.Tree
	pm   *patternmatcher.PatternMatcher
	// Ignore is the ignore file read, "" for none.
	Ignore string
}

// Open opens the context directory dir; containerfile (may be "") is the
// Containerfile's path, whose NAME.dockerignore comes first.
func Open(dir, containerfile string) (*Dir, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", dir)
	}
	t, err := fsx.OpenTree(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	d := &Dir{root: dir, t: t}
	var candidates []string
	if containerfile != "" {
		candidates = append(candidates, containerfile+".dockerignore")
	}
	for _, n := range IgnoreFiles {
		candidates = append(candidates, filepath.Join(dir, n))
	}
	for _, c := range candidates {
		f, err := os.Open(c)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("ignore file: %w", err)
		}
		pats, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("ignore file %s: %w", c, err)
		}
		if d.pm, err = patternmatcher.New(pats); err == nil {
			// Patterns compile on first use: a bad one is reported here,
			// with its file, rather than by whichever walk meets it.
			_, err = d.pm.MatchesOrParentMatches("x")
		}
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("ignore file %s: %w", c, err)
		}
		d.Ignore = c
		break
	}
	return d, nil
}

// Close releases the context.
func (d *Dir) Close() error { return d.t.Close() }

// Root is the context directory.
func (d *Dir) Root() string { return d.root }

// Tree is the context, confined.
func (d *Dir) Tree() *fsx.Tree { return d.t }

// Clean turns a source as written in a Containerfile into a name relative
// to the context root ("" for the root itself). A source that climbs
// above the root is refused, as Docker refuses it.
func Clean(src string) (string, error) {
	p := path.Clean("/" + src)
	if strings.HasPrefix(path.Clean(src), "..") && !path.IsAbs(src) {
		return "", fmt.Errorf("%s: %w", src, ErrOutside)
	}
	return strings.TrimPrefix(p, "/"), nil
}

// HasWildcards says whether a source is a pattern.
func HasWildcards(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// Excluded says whether the ignore file excludes rel, given whether its
// parent directory was (as patternmatcher's parent results).
func (d *Dir) excluded(rel string, parent patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error) {
	if d.pm == nil || rel == "" {
		return false, patternmatcher.MatchInfo{}, nil
	}
	return d.pm.MatchesUsingParentResults(filepath.FromSlash(rel), parent)
}

// Excluded says whether the ignore file excludes rel (or a directory
// above it).
func (d *Dir) Excluded(rel string) (bool, error) {
	if d.pm == nil || rel == "" {
		return false, nil
	}
	var info patternmatcher.MatchInfo
	parts := strings.Split(rel, "/")
	var ex bool
	var err error
	for i := range parts {
		ex, info, err = d.excluded(strings.Join(parts[:i+1], "/"), info)
		if err != nil {
			return false, err
		}
	}
	return ex, nil
}

// Entry is one name found in the context.
type Entry struct {
	// Rel is the name relative to the root.
	Rel string
	St  unix.Stat_t
}

// IsDir says whether the entry is a directory.
func (e Entry) IsDir() bool { return e.St.Mode&unix.S_IFMT == unix.S_IFDIR }

// Lstat reads rel's metadata, its last name not followed.
func Lstat(t *fsx.Tree, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	dir, base := path.Split(rel)
	if base == "" {
		fd, err := t.Dir("")
		if err != nil {
			return st, err
		}
		defer unix.Close(fd)
		err = unix.Fstat(fd, &st)
		return st, err
	}
	fd, err := t.Dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	if err := unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "lstat", Path: rel, Err: err}
	}
	return st, nil
}

// Stat reads rel's metadata, symlinks followed inside the root.
func Stat(t *fsx.Tree, rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := t.Open(rel, unix.O_PATH, 0)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}

// Resolve follows symlinks in rel inside the root, the last name too, and
// returns the name it leads to, relative to the root, as Docker resolves
// a COPY source.
func Resolve(t *fsx.Tree, rel string) (string, error) {
	fd, err := t.Open(rel, unix.O_PATH, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	full, err := os.Readlink(fsx.FdPath(fd))
	if err != nil {
		return "", err
	}
	rootFd, err := t.Dir("")
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFd)
	root, err := os.Readlink(fsx.FdPath(rootFd))
	if err != nil {
		return "", err
	}
	if full == root {
		return "", nil
	}
	r, ok := strings.CutPrefix(full, strings.TrimSuffix(root, "/")+"/")
	if !ok {
		return "", fmt.Errorf("%s: %w", rel, ErrOutside)
	}
	return r, nil
}

// Walk calls fn for rel and, when it is a directory, everything below it
// the ignore file does not exclude, parents before children, names in
// byte order. Symlinks are not followed.
func (d *Dir) Walk(rel string, fn func(Entry) error) error {
	if d.pm == nil {
		return WalkTree(d.t, rel, nil, false, fn)
	}
	return WalkTree(d.t, rel, d.excluded, d.pm.Exclusions(), fn)
}

// Matcher says whether a name is excluded, given its parent's result.
type Matcher func(rel string, parent patternmatcher.MatchInfo) (bool, patternmatcher.MatchInfo, error)

// WalkTree walks rel in t as Dir.Walk does; ex (may be nil) excludes
// names, and an excluded directory is still walked when exceptions
// (!pattern) may bring names below it back.
func WalkTree(t *fsx.Tree, rel string, ex Matcher, exceptions bool, fn func(Entry) error) error {
	st, err := Lstat(t, rel)
	if err != nil {
		return err
	}
	var info patternmatcher.MatchInfo
	if ex != nil && rel != "" {
		// The matches of the directories above rel.
		parts := strings.Split(rel, "/")
		for i := 0; i < len(parts)-1; i++ {
			if _, info, err = ex(strings.Join(parts[:i+1], "/"), info); err != nil {
				return err
			}
		}
	}
	w := walker{t: t, ex: ex, exceptions: exceptions, fn: fn}
	return w.walk(Entry{Rel: rel, St: st}, info)
}

type walker struct {
	t          *fsx.Tree
	ex         Matcher
	exceptions bool
	fn         func(Entry) error
}

func (w *walker) walk(e Entry, parent patternmatcher.MatchInfo) error {
	t, ex, fn := w.t, w.ex, w.fn
	info := parent
	if ex != nil && e.Rel != "" {
		skip, mi, err := ex(e.Rel, parent)
		if err != nil {
			return err
		}
		info = mi
		if skip && !(e.IsDir() && w.exceptions) {
			return nil
		}
		if !skip {
			if err := fn(e); err != nil {
				return err
			}
		}
	} else if err := fn(e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	fd, err := t.Open(e.Rel, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), e.Rel)
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return err
	}
	sort.Strings(names)
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			f.Close()
			return &os.PathError{Op: "lstat", Path: path.Join(e.Rel, n), Err: err}
		}
		if err := w.walk(Entry{Rel: path.Join(e.Rel, n), St: st}, info); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// Glob lists the names, relative to the root, that pattern (slash-
// separated, relative to the root) matches, in byte order, excluded names
// left out: each name is matched whole with path.Match, as Docker's
// classic builder matches a COPY source with wildcards.
func (d *Dir) Glob(pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("source %q: %w", pattern, err)
	}
	var out []string
	err := d.Walk("", func(e Entry) error {
		if e.Rel == "" {
			return nil
		}
		if ok, _ := path.Match(pattern, e.Rel); ok {
			out = append(out, e.Rel)
		}
		return nil
	})
	return out, err
}

// Hasher digests what a COPY reads: for every name, its path below the
// source, type, permission bits, owner, link target and content. mtimes
// are left out, so a touched file that did not change hits the cache.
type Hasher struct {
	h   hash.Hash
	buf []byte
}

// NewHasher starts a digest.
func NewHasher() *Hasher { return &Hasher{h: sha256.New(), buf: make([]byte, 256<<10)} }

// String adds a string of the caller's (a separator, a source name).
func (h *Hasher) String(s string) {
	h.h.Write([]byte(strconv.Itoa(len(s))))
	h.h.Write([]byte{':'})
	h.h.Write([]byte(s))
}

// Add adds the entry rel (shown as name) of t.
func (h *Hasher) Add(t *fsx.Tree, name, rel string, st *unix.Stat_t) error {
	h.String(name)
	h.String(fmt.Sprintf("%o %d %d", st.Mode, st.Uid, st.Gid))
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		f, err := t.OpenRegular(rel)
		if err != nil {
			return err
		}
		defer f.Close()
		c := sha256.New()
		n, err := io.CopyBuffer(c, f, h.buf)
		if err != nil {
			return fmt.Errorf("read %s: %w", rel, err)
		}
		h.String(strconv.FormatInt(n, 10) + " " + hex.EncodeToString(c.Sum(nil)))
	case unix.S_IFLNK:
		dir, base := path.Split(rel)
		fd, err := t.Dir(strings.TrimSuffix(dir, "/"))
		if err != nil {
			return err
		}
		target, err := readlinkat(fd, base)
		unix.Close(fd)
		if err != nil {
			return err
		}
		h.String(target)
	case unix.S_IFCHR, unix.S_IFBLK:
		h.String(fmt.Sprintf("%d", st.Rdev))
	}
	return nil
}

// Digest is the digest of everything added.
func (h *Hasher) Digest() digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, h.h.Sum(nil))
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: name, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, len(buf)*2)
	}
}

// Readlink reads the target of the symlink rel of t.
func Readlink(t *fsx.Tree, rel string) (string, error) {
	dir, base := path.Split(rel)
	fd, err := t.Dir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	return readlinkat(fd, base)
}
