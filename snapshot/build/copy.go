package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/build/contextdir"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// copySpec is a COPY or ADD after expansion.
type copySpec struct {
	cmd      string
	sd       instructions.SourcesAndDest
	from     string
	chown    string
	chmod    string
	excludes []string
	parents  bool
	add      bool
	checksum string
	unpack   *bool
}

// source is where a COPY reads: the context, or a stage's or image's
// root file system.
type source struct {
	t *fsx.Tree
	// ctx is the context (its ignore file applies), nil for a rootfs.
	ctx *contextdir.Dir
	// owner reads a rootfs file's image owner (COPY --from keeps owners).
	owner func(rel string, st *unix.Stat_t) (int, int, error)
	// id names the source in the cache key: its image's digest, or
	// "context" (its files are hashed).
	id    string
	close func()
	// open opens t on first use (a rootfs; the context is open).
	open func() error
}

// item is one source a COPY copies.
type item struct {
	// name is the source as written (after glob expansion), whose base
	// names a file copied into a directory.
	name string
	// rel is the resolved name in the source tree, st its metadata.
	rel string
	st  unix.Stat_t
	// inline (heredoc) and downloaded (ADD URL) content.
	inline   *string
	download string
	mtime    time.Time
	// archive: ADD of a local tar extracts it.
	archive bool
}

func (it *item) isDir() bool {
	return it.inline == nil && it.download == "" && it.st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// copy runs COPY or ADD.
func (b *builder) copy(ctx context.Context, st *stage, cs copySpec) (bool, error) {
	if cs.parents {
		return false, errors.New("--parents is not supported")
	}
	if len(cs.excludes) > 0 {
		return false, errors.New("--exclude is not supported")
	}
	src, err := b.copySource(ctx, st, cs.from)
	if err != nil {
		return false, err
	}
	defer func() { src.close() }()
	tmp, err := os.MkdirTemp(b.work.Path, "add-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	items, err := b.copyItems(ctx, src, cs, tmp)
	if err != nil {
		return false, err
	}
	var wd string
	if _, err := st.cfg.GetRuntime("WorkingDir", &wd); err != nil {
		return false, err
	}
	dest := cs.sd.DestPath
	if !path.IsAbs(dest) {
		dest = path.Join("/", wd, dest)
		if strings.HasSuffix(cs.sd.DestPath, "/") || cs.sd.DestPath == "." || strings.HasSuffix(cs.sd.DestPath, "/.") {
			dest += "/"
		}
	}
	if len(items) > 1 && !strings.HasSuffix(dest, "/") {
		return false, fmt.Errorf("when using %s with more than one source file, the destination must be a directory and end with a /", cs.cmd)
	}
	sum, err := b.digestItems(src, items)
	if err != nil {
		return false, err
	}
	var chownText string
	if cs.chown != "" {
		chownText = "--chown=" + cs.chown + " "
	}
	if cs.chmod != "" {
		chownText += "--chmod=" + cs.chmod + " "
	}
	kind := "file"
	if len(items) > 1 {
		kind = "multi"
	} else if items[0].isDir() {
		kind = "dir"
	}
	createdBy, err := st.nop(fmt.Sprintf("%s %s%s:%s in %s ", cs.cmd, chownText, kind, sum.Encoded(), dest))
	if err != nil {
		return false, err
	}
	createdBy = strings.Replace(createdBy, "#(nop)  "+cs.cmd, "#(nop) "+cs.cmd, 1)
	key := keyOf(st.key.String(), "copy", createdBy, src.id, sum.String())
	if ok, err := b.hit(st, key); ok || err != nil {
		return ok, err
	}
	if err := b.ensureBundle(ctx, st); err != nil {
		return false, err
	}
	if err := b.doCopy(ctx, st, src, cs, items, dest); err != nil {
		return false, err
	}
	return false, b.commit(ctx, st, key, createdBy)
}

// copySource opens what a COPY reads from.
func (b *builder) copySource(ctx context.Context, st *stage, from string) (*source, error) {
	if from == "" {
		return &source{t: b.ctxd.Tree(), ctx: b.ctxd, id: "context", close: func() {}}, nil
	}
	var src *stage
	if j, ok := b.f.stageIndex(from, st.idx); ok {
		src = b.stages[j]
		if src == nil || !src.done {
			return nil, fmt.Errorf("--from=%s: stage not built", from)
		}
	} else if src = b.imageStages[from]; src == nil {
		img, err := b.image(ctx, from, st.platform)
		if err != nil {
			return nil, fmt.Errorf("--from=%s: %w", from, err)
		}
		src = &stage{idx: -1, name: from}
		if err := b.setImage(src, img); err != nil {
			return nil, err
		}
		// Its bundle serves every later copy from it.
		b.imageStages[from] = src
	}
	s := &source{id: src.img.Descriptor.Digest.String(), close: func() {}}
	s.owner = func(rel string, st *unix.Stat_t) (int, int, error) { return 0, 0, nil }
	// The tree is opened only when the copy runs (a cache hit needs none).
	s.t = nil
	s.open = func() error {
		if err := b.ensureBundle(ctx, src); err != nil {
			return err
		}
		t, err := fsx.OpenTree(src.rootfs())
		if err != nil {
			return err
		}
		s.t = t
		s.close = func() { t.Close() }
		own, err := b.ownership()
		if err != nil {
			return err
		}
		s.owner = func(rel string, st *unix.Stat_t) (int, int, error) {
			xs := map[string][]byte{}
			if own.Rootless && st.Mode&unix.S_IFMT != unix.S_IFLNK {
				dir, base := path.Split(rel)
				if dfd, err := t.Dir(strings.TrimSuffix(dir, "/")); err == nil {
					if v, err := fsx.GetXattr(fsx.ProcPath(dfd, base), rootlessXattr); err == nil {
						xs[rootlessXattr] = v
					}
					unix.Close(dfd)
				}
			}
			return own.Owner(rel, st, xs)
		}
		return nil
	}
	return s, nil
}

// ownership reads owners back from the build's bundles as commit does.
func (b *builder) ownership() (layer.Ownership, error) {
	so := b.o.Store.Options()
	form := so.Owners()
	o := layer.Ownership{Rootless: !form.Empty()}
	m, err := so.Writer(form)
	if err != nil {
		return o, err
	}
	o.ToImage = m
	return o, nil
}

// isURL says whether an ADD source is fetched.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// copyItems resolves the sources of a COPY: globs expanded, names
// resolved (symlinks followed inside the source), URLs fetched into tmp.
func (b *builder) copyItems(ctx context.Context, src *source, cs copySpec, tmp string) ([]*item, error) {
	var items []*item
	for _, sc := range cs.sd.SourceContents {
		data := sc.Data
		items = append(items, &item{name: sc.Path, inline: &data})
	}
	for _, s := range cs.sd.SourcePaths {
		if isURL(s) {
			if !cs.add {
				return nil, fmt.Errorf("source can't be a URL for COPY: %s", s)
			}
			it, err := b.fetch(ctx, s, cs.checksum, tmp)
			if err != nil {
				return nil, err
			}
			items = append(items, it)
			continue
		}
		if cs.checksum != "" {
			return nil, fmt.Errorf("--checksum is only for URL sources: %s", s)
		}
		if src.t == nil {
			if err := src.open(); err != nil {
				return nil, err
			}
		}
		rel, err := contextdir.Clean(s)
		if err != nil {
			return nil, err
		}
		var names []string
		if contextdir.HasWildcards(rel) {
			if src.ctx != nil {
				if names, err = src.ctx.Glob(rel); err != nil {
					return nil, err
				}
			} else if names, err = globTree(src.t, rel); err != nil {
				return nil, err
			}
			if len(names) == 0 {
				return nil, fmt.Errorf("%s: no source files were specified (%w)", s, contextdir.ErrNotFound)
			}
		} else {
			names = []string{rel}
		}
		for _, n := range names {
			it, err := resolveItem(src, n, s)
			if err != nil {
				return nil, err
			}
			it.archive = cs.add && (cs.unpack == nil || *cs.unpack) && !it.isDir()
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return nil, errors.New("no source files were specified")
	}
	return items, nil
}

// resolveItem finds source name rel in src: symlinks followed inside it,
// excluded names refused.
func resolveItem(src *source, rel, orig string) (*item, error) {
	if src.ctx != nil && rel != "" {
		if ex, err := src.ctx.Excluded(rel); err != nil {
			return nil, err
		} else if ex {
			return nil, fmt.Errorf("%s: %w (excluded by %s)", orig, contextdir.ErrNotFound, filepath.Base(src.ctx.Ignore))
		}
	}
	res, err := contextdir.Resolve(src.t, rel)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%s: %w", orig, contextdir.ErrNotFound)
		}
		return nil, fmt.Errorf("%s: %w", orig, err)
	}
	st, err := contextdir.Lstat(src.t, res)
	if err != nil {
		return nil, err
	}
	return &item{name: rel, rel: res, st: st}, nil
}

// globTree matches a pattern against every name of a rootfs.
func globTree(t *fsx.Tree, pattern string) ([]string, error) {
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, err
	}
	// Walk only below the longest directory without wildcards.
	dir := ""
	parts := strings.Split(pattern, "/")
	for i, p := range parts[:len(parts)-1] {
		if contextdir.HasWildcards(p) {
			break
		}
		dir = strings.Join(parts[:i+1], "/")
	}
	var out []string
	err := contextdir.WalkTree(t, dir, nil, false, func(e contextdir.Entry) error {
		if ok, _ := path.Match(pattern, e.Rel); ok && e.Rel != "" {
			out = append(out, e.Rel)
		}
		return nil
	})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	return out, err
}

// digestItems digests what the items read (see contextdir.Hasher).
func (b *builder) digestItems(src *source, items []*item) (digest.Digest, error) {
	h := contextdir.NewHasher()
	for _, it := range items {
		h.String("item " + it.name)
		switch {
		case it.inline != nil:
			h.String(*it.inline)
		case it.download != "":
			f, err := os.Open(it.download)
			if err != nil {
				return "", err
			}
			c := sha256.New()
			_, err = io.Copy(c, f)
			f.Close()
			if err != nil {
				return "", err
			}
			h.String(hex.EncodeToString(c.Sum(nil)) + " " + it.mtime.UTC().Format(time.RFC3339))
		default:
			var walkErr error
			walk := func(e contextdir.Entry) error {
				rel := strings.TrimPrefix(strings.TrimPrefix(e.Rel, it.rel), "/")
				return h.Add(src.t, rel, e.Rel, &e.St)
			}
			if src.ctx != nil {
				walkErr = src.ctx.Walk(it.rel, walk)
			} else {
				walkErr = contextdir.WalkTree(src.t, it.rel, nil, false, walk)
			}
			if walkErr != nil {
				return "", walkErr
			}
		}
	}
	return h.Digest(), nil
}

// identity is the owner COPY gives files: --chown, else root; nil keeps
// the source's owners (COPY --from without --chown).
type identity struct{ uid, gid int }

// doCopy writes the items into the stage's rootfs at dest.
func (b *builder) doCopy(ctx context.Context, st *stage, src *source, cs copySpec, items []*item, dest string) error {
	t, err := fsx.OpenTree(st.rootfs())
	if err != nil {
		return err
	}
	defer t.Close()
	var id *identity
	if cs.chown != "" {
		uid, gid, err := parseChown(t, cs.chown)
		if err != nil {
			return err
		}
		id = &identity{uid, gid}
	} else if cs.from == "" {
		id = &identity{0, 0}
	}
	var chmod *uint32
	if cs.chmod != "" {
		m, err := strconv.ParseUint(cs.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("--chmod=%s: not an octal mode", cs.chmod)
		}
		v := uint32(m)
		chmod = &v
	}
	w := b.writer(st)
	c := &copier{b: b, t: t, w: w, src: src, id: id, chmod: chmod, now: b.created()}
	for _, it := range items {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.item(it, dest); err != nil {
			return err
		}
	}
	return nil
}

// parseChown reads --chown=USER[:GROUP], names looked up in the rootfs's
// /etc/passwd and /etc/group; a user alone gives the group of the same
// number, as Docker documents.
func parseChown(t *fsx.Tree, s string) (int, int, error) {
	u, g, hasGroup := strings.Cut(s, ":")
	uid, err := lookupID(t, "etc/passwd", u)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", s, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = lookupID(t, "etc/group", g); err != nil {
			return 0, 0, fmt.Errorf("--chown=%s: %w", s, err)
		}
	}
	return uid, gid, nil
}

// lookupID turns a name or number into an ID through a passwd-format
// file of the rootfs.
func lookupID(t *fsx.Tree, file, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil {
		if n < 0 || n > math.MaxUint32 {
			return 0, fmt.Errorf("invalid id %d", n)
		}
		return n, nil
	}
	f, err := t.OpenRegular(file)
	if err != nil {
		return 0, fmt.Errorf("no /%s to look up %q in", file, name)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[0] == name {
			n, err := strconv.Atoi(fields[2])
			if err != nil || n < 0 || n > math.MaxUint32 {
				return 0, fmt.Errorf("/%s: %q has id %q", file, name, fields[2])
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%q not found in /%s", name, file)
}
