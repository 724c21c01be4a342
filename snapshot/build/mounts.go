package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/build/contextdir"
	"golang.org/x/sys/unix"
)

// prepareMounts turns a RUN's mounts into runtime mounts (and secret
// env). The returned cleanup releases locks and removes staged files.
func (b *builder) prepareMounts(ctx context.Context, st *stage, ms []*instructions.Mount, inline *instructions.ShellInlineFile, spec *RunSpec) (func(), error) {
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	stage, err := os.MkdirTemp(b.work.Path, "run-")
	if err != nil {
		return cleanup, err
	}
	cleanups = append(cleanups, func() { _ = fsx.RemoveAll(stage) })
	var wd = spec.Cwd
	abs := func(t string) string {
		if path.IsAbs(t) {
			return path.Clean(t)
		}
		return path.Join("/", wd, t)
	}
	if inline != nil {
		p := filepath.Join(stage, "pipes")
		if err := os.Mkdir(p, 0o755); err != nil {
			return cleanup, err
		}
		if err := os.WriteFile(filepath.Join(p, inline.Name), []byte(inline.Data), 0o755); err != nil {
			return cleanup, err
		}
		spec.Mounts = append(spec.Mounts, Mount{Type: "bind", Source: p, Target: "/dev/pipes", ReadOnly: true})
	}
	for i, m := range ms {
		switch m.Type {
		case instructions.MountTypeTmpfs:
			if m.Target == "" {
				return cleanup, errors.New("--mount=type=tmpfs needs a target")
			}
			spec.Mounts = append(spec.Mounts, Mount{Type: "tmpfs", Target: abs(m.Target), Size: m.SizeLimit})
		case instructions.MountTypeBind:
			if m.Target == "" {
				return cleanup, errors.New("--mount=type=bind needs a target")
			}
			srcPath, err := b.bindSource(ctx, st, m, filepath.Join(stage, fmt.Sprintf("bind%d", i)))
			if err != nil {
				return cleanup, err
			}
			spec.Mounts = append(spec.Mounts, Mount{Type: "bind", Source: srcPath, Target: abs(m.Target), ReadOnly: m.ReadOnly})
		case instructions.MountTypeCache:
			if m.Target == "" {
				return cleanup, errors.New("--mount=type=cache needs a target")
			}
			dir, release, err := b.cacheMount(m)
			if err != nil {
				return cleanup, err
			}
			cleanups = append(cleanups, release)
			spec.Mounts = append(spec.Mounts, Mount{Type: "bind", Source: dir, Target: abs(m.Target), ReadOnly: m.ReadOnly})
		case instructions.MountTypeSecret:
			if err := b.secretMount(st, m, filepath.Join(stage, fmt.Sprintf("secret%d", i)), abs, spec); err != nil {
				return cleanup, err
			}
		default:
			return cleanup, fmt.Errorf("--mount=type=%s is not supported", m.Type)
		}
	}
	return cleanup, nil
}

// bindSource is the host path a RUN --mount=type=bind shows: the
// context's source staged at dst, or the source in the from= stage's
// rootfs.
func (b *builder) bindSource(ctx context.Context, st *stage, m *instructions.Mount, dst string) (string, error) {
	rel, err := contextdir.Clean(m.Source)
	if err != nil {
		return "", err
	}
	if m.From == "" {
		// The context as the build sees it: excluded files left out,
		// and a writable mount's changes thrown away.
		if err := b.stageContext(rel, dst); err != nil {
			return "", err
		}
		return dst, nil
	}
	s, err := b.mountStage(ctx, st, m.From)
	if err != nil {
		return "", err
	}
	if err := b.ensureBundle(ctx, s); err != nil {
		return "", err
	}
	t, err := fsx.OpenTree(s.rootfs())
	if err != nil {
		return "", err
	}
	res, err := contextdir.Resolve(t, rel)
	t.Close()
	if err != nil {
		return "", fmt.Errorf("--mount from=%s source=%s: %w", m.From, m.Source, err)
	}
	return filepath.Join(s.rootfs(), res), nil
}

// secretMount gives a RUN the secret m asks for: in an environment
// variable (env=) and/or as a file written at p, bind-mounted read-only
// at its target (default /run/secrets/ID). A secret not provided is an
// error only when required.
func (b *builder) secretMount(st *stage, m *instructions.Mount, p string, abs func(string) string, spec *RunSpec) error {
	id := secretID(m)
	src, ok := b.o.Secrets[id]
	if !ok {
		if m.Required {
			return fmt.Errorf("secret %s: not provided (--secret id=%s,src=FILE)", id, id)
		}
		return nil
	}
	data := src.Data
	if src.File != "" {
		var err error
		if data, err = os.ReadFile(src.File); err != nil {
			return fmt.Errorf("secret %s: %w", id, err)
		}
	}
	if m.Env != nil {
		name := *m.Env
		if name == "" {
			name = id
		}
		spec.Env = append(spec.Env, name+"="+string(data))
		if m.Target == "" {
			return nil
		}
	}
	target := m.Target
	if target == "" {
		target = "/run/secrets/" + id
	}
	mode := uint64(0o400)
	if m.Mode != nil {
		mode = *m.Mode
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return err
	}
	uid, gid := 0, 0
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	hu, hg, _ := b.writer(st).owner(uid, gid)
	if err := os.Lchown(p, hu, hg); err != nil {
		return err
	}
	if err := os.Chmod(p, os.FileMode(mode&0o777)); err != nil {
		return err
	}
	spec.Mounts = append(spec.Mounts, Mount{Type: "bind", Source: p, Target: abs(target), ReadOnly: true})
	return nil
}

// stageContext copies the context's rel, as the build sees it, to dst.
func (b *builder) stageContext(rel, dst string) error {
	t := b.ctxd.Tree()
	st, err := contextdir.Stat(t, rel)
	if err != nil {
		return fmt.Errorf("--mount source %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		f, err := t.OpenRegular(rel)
		if err != nil {
			return err
		}
		defer f.Close()
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(st.Mode&0o777))
		if err != nil {
			return err
		}
		_, err = io.Copy(out, f)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	dt, err := fsx.OpenTree(dst)
	if err != nil {
		return err
	}
	defer dt.Close()
	res, err := contextdir.Resolve(t, rel)
	if err != nil {
		return err
	}
	w := &writer{}
	return b.ctxd.Walk(res, func(e contextdir.Entry) error {
		if e.Rel == res {
			return nil
		}
		sub := strings.TrimPrefix(strings.TrimPrefix(e.Rel, res), "/")
		// Staged as this process's files: a mount shows them as they are.
		n := &node{typ: e.St.Mode & unix.S_IFMT, mode: e.St.Mode & 0o7777, uid: os.Geteuid(), gid: os.Getegid()}
		n.mtime = time.Unix(e.St.Mtim.Sec, e.St.Mtim.Nsec)
		switch n.typ {
		case unix.S_IFREG:
			r := e.Rel
			n.open = func() (io.ReadCloser, error) { return t.OpenRegular(r) }
		case unix.S_IFLNK:
			if n.link, err = contextdir.Readlink(t, e.Rel); err != nil {
				return err
			}
		case unix.S_IFDIR:
		default:
			return nil
		}
		return w.put(dt, sub, n)
	})
}

// cacheMount returns the directory of a RUN --mount=type=cache, made on
// first use, and, for sharing=locked, holds its lock until release.
func (b *builder) cacheMount(m *instructions.Mount) (string, func(), error) {
	id := cacheID(m)
	h := digest.FromString(id).Encoded()[:32]
	dir := filepath.Join(b.o.Store.Root(), BuildDir, MountsDir, h)
	if err := os.MkdirAll(filepath.Join(b.o.Store.Root(), BuildDir, MountsDir), 0o700); err != nil {
		return "", nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		tmp, err := os.MkdirTemp(filepath.Dir(dir), ".new-")
		if err != nil {
			return "", nil, err
		}
		mode := uint64(0o755)
		if m.Mode != nil {
			mode = *m.Mode
		}
		uid, gid := 0, 0
		if m.UID != nil {
			uid = int(*m.UID)
		}
		if m.GID != nil {
			gid = int(*m.GID)
		}
		hu, hg, _ := (&writer{m: b.writerMap()}).owner(uid, gid)
		if err := os.Chown(tmp, hu, hg); err != nil {
			os.Remove(tmp)
			return "", nil, err
		}
		if err := os.Chmod(tmp, os.FileMode(mode&0o777)); err != nil {
			os.Remove(tmp)
			return "", nil, err
		}
		if err := os.WriteFile(tmp+".id", []byte(id+"\n"), 0o600); err != nil {
			os.Remove(tmp)
			return "", nil, err
		}
		if err := os.Rename(tmp+".id", dir+".id"); err != nil {
			return "", nil, err
		}
		if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
			os.Remove(tmp)
			return "", nil, err
		}
		os.Remove(tmp)
	}
	release := func() {}
	if m.CacheSharing == instructions.MountSharingLocked {
		f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return "", nil, err
		}
		if err := fsx.Flock(f, unix.LOCK_EX); err != nil {
			f.Close()
			return "", nil, err
		}
		release = func() { f.Close() }
	}
	return dir, release, nil
}
