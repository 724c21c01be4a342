package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/build/contextdir"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// Runner runs a command in the bundle dir (its config.json is the
// bundle's image's; spec says what this run differs in) and returns its
// exit status.
type Runner func(ctx context.Context, bundle string, spec RunSpec) (int, error)

// RunSpec is one RUN step's process and mounts.
type RunSpec struct {
	Args []string
	Env  []string
	// Cwd is the working directory, User the image config's user
	// (NAME, UID, UID:GID, ...), as the bundle's /etc/passwd reads it.
	Cwd, User string
	// Network is "host" or "none".
	Network string
	Mounts  []Mount
	Stdout  io.Writer
	Stderr  io.Writer
}

// Mount is one RUN --mount as the runtime mounts it.
type Mount struct {
	// Type is "bind" or "tmpfs".
	Type string
	// Source is a host path (bind).
	Source, Target string
	ReadOnly       bool
	// Size limits a tmpfs (bytes; 0: the kernel's default).
	Size int64
}

// run runs RUN.
func (b *builder) run(ctx context.Context, st *stage, c *instructions.RunCommand, env []string) (bool, error) {
	args, inline, err := runArgs(st, c)
	if err != nil {
		return false, err
	}
	runEnv := append(append([]string{}, env...), st.args.filtered(env)...)
	saved := args
	if ha := st.args.historyArgs(env); len(ha) > 0 {
		saved = append(append([]string{"|" + strconv.Itoa(len(ha))}, ha...), args...)
	}
	createdBy := strings.Join(saved, " ")
	network := instructions.GetNetwork(c)
	if network == instructions.NetworkDefault {
		network = b.o.Network
	}
	if network == "" {
		network = "host"
	}
	mounts := instructions.GetMounts(c)
	mkey, err := b.mountsKey(ctx, st, mounts)
	if err != nil {
		return false, err
	}
	var user, wd string
	if _, err := st.cfg.GetRuntime("User", &user); err != nil {
		return false, err
	}
	if _, err := st.cfg.GetRuntime("WorkingDir", &wd); err != nil {
		return false, err
	}
	keyParts := []string{st.key.String(), "run", createdBy, strings.Join(st.args.filtered(env), "\n"), network, mkey}
	if inline != nil {
		keyParts = append(keyParts, inline.Name, inline.Data)
	}
	key := keyOf(keyParts...)
	if ok, err := b.hit(st, key); ok || err != nil {
		return ok, err
	}
	spec := RunSpec{Args: args, Env: runEnv, Cwd: wd, User: user, Network: network, Stdout: b.o.Stdout, Stderr: b.o.Stderr}
	if err := b.execRun(ctx, st, spec, mounts, inline); err != nil {
		return false, err
	}
	return false, b.commit(ctx, st, key, createdBy)
}

// runArgs is the command line of a RUN: heredocs turned into a script
// (or a file run by its interpreter, inline), the stage's shell before a
// shell-form command.
func runArgs(st *stage, c *instructions.RunCommand) (args []string, inline *instructions.ShellInlineFile, err error) {
	args = append([]string{}, c.CmdLine...)
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, nil, fmt.Errorf("invalid heredoc RUN: %v", args)
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				// A script with its interpreter: run it as a file.
				f := c.Files[0]
				f.Data = data
				inline = &f
				// Started by the shell: snapshot/run looks for the command
				// in the rootfs, where the mounted script is not.
				args = []string{"exec " + path.Join("/dev/pipes", f.Name)}
			} else {
				args = []string{data}
			}
		} else {
			var sb strings.Builder
			sb.WriteString(args[0])
			for _, f := range c.Files {
				sb.WriteString("\n" + f.Data + f.Name)
			}
			args = []string{sb.String()}
		}
	}
	if c.PrependShell {
		sh, err := st.shellOf()
		if err != nil {
			return nil, nil, err
		}
		args = append(append([]string{}, sh...), args...)
	}
	return args, inline, nil
}

// execRun runs a RUN step's command in the stage's bundle, its mounts
// set up for the run and their mount points taken away after it.
func (b *builder) execRun(ctx context.Context, st *stage, spec RunSpec, mounts []*instructions.Mount, inline *instructions.ShellInlineFile) error {
	if err := b.ensureBundle(ctx, st); err != nil {
		return err
	}
	if spec.Cwd == "" {
		spec.Cwd = "/"
	} else if ok, _ := exists(st.rootfs(), spec.Cwd); !ok {
		// The runtime would make it; Docker's builder makes it too.
		if err := b.mkdirRoot(st, spec.Cwd); err != nil {
			return err
		}
	}
	if spec.Stdout == nil {
		spec.Stdout = io.Discard
	}
	if spec.Stderr == nil {
		spec.Stderr = io.Discard
	}
	cleanup, err := b.prepareMounts(ctx, st, mounts, inline, &spec)
	defer cleanup()
	if err != nil {
		return err
	}
	runner := b.o.Run
	if runner == nil {
		runner = defaultRunner(b.o.Store)
	}
	mp, err := newMountpoints(st.rootfs(), spec.Mounts)
	if err != nil {
		return err
	}
	code, err := runner(ctx, st.bundle, spec)
	if cerr := mp.remove(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &RunError{Command: spec.Args, Code: code}
	}
	return nil
}

// mountsKey is what a RUN's mounts add to its cache key: their kinds,
// targets and options; what a bind mount shows (the digest of the
// context files, the stage's image); a cache's or secret's id, never a
// secret's content.
func (b *builder) mountsKey(ctx context.Context, st *stage, ms []*instructions.Mount) (string, error) {
	var parts []string
	for _, m := range ms {
		p := fmt.Sprintf("%s target=%s ro=%v", m.Type, m.Target, m.ReadOnly)
		switch m.Type {
		case instructions.MountTypeBind:
			if m.From == "" {
				rel, err := contextdir.Clean(m.Source)
				if err != nil {
					return "", err
				}
				h := contextdir.NewHasher()
				err = b.ctxd.Walk(rel, func(e contextdir.Entry) error {
					return h.Add(b.ctxd.Tree(), e.Rel, e.Rel, &e.St)
				})
				if err != nil {
					return "", fmt.Errorf("--mount source %s: %w", m.Source, err)
				}
				p += " context:" + m.Source + " " + h.Digest().String()
			} else {
				src, err := b.mountStage(ctx, st, m.From)
				if err != nil {
					return "", err
				}
				p += " from:" + src.img.Descriptor.Digest.String() + " " + m.Source
			}
		case instructions.MountTypeCache:
			p += " id=" + cacheID(m) + " sharing=" + string(m.CacheSharing) + " from=" + m.From + " src=" + m.Source
		case instructions.MountTypeSecret:
			p += " id=" + secretID(m) + " required=" + strconv.FormatBool(m.Required)
			if m.Env != nil {
				p += " env=" + *m.Env
			}
		case instructions.MountTypeTmpfs:
			p += " size=" + strconv.FormatInt(m.SizeLimit, 10)
		case instructions.MountTypeSSH:
			return "", errors.New("--mount=type=ssh is not supported")
		}
		if m.Mode != nil {
			p += fmt.Sprintf(" mode=%o", *m.Mode)
		}
		if m.UID != nil {
			p += fmt.Sprintf(" uid=%d", *m.UID)
		}
		if m.GID != nil {
			p += fmt.Sprintf(" gid=%d", *m.GID)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "\n"), nil
}

// mountStage is the stage or image a bind or cache mount's from= names.
func (b *builder) mountStage(ctx context.Context, st *stage, from string) (*stage, error) {
	if j, ok := b.f.stageIndex(from, st.idx); ok {
		s := b.stages[j]
		if s == nil || !s.done {
			return nil, fmt.Errorf("--mount from=%s: stage not built", from)
		}
		return s, nil
	}
	if s := b.imageStages[from]; s != nil {
		return s, nil
	}
	img, err := b.image(ctx, from, st.platform)
	if err != nil {
		return nil, fmt.Errorf("--mount from=%s: %w", from, err)
	}
	s := &stage{idx: -1, name: from}
	if err := b.setImage(s, img); err != nil {
		return nil, err
	}
	b.imageStages[from] = s
	return s, nil
}

func cacheID(m *instructions.Mount) string {
	if m.CacheID != "" {
		return m.CacheID
	}
	return m.Target
}

func secretID(m *instructions.Mount) string {
	if m.CacheID != "" {
		return m.CacheID
	}
	if m.Source != "" {
		return m.Source
	}
	return path.Base(m.Target)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writerMap is the map files of the build's bundles are written under.
func (b *builder) writerMap() *ids.Map {
	so := b.o.Store.Options()
	m, err := so.Writer(so.Owners())
	if err != nil {
		return nil
	}
	return m
}

// mountpoints are the mount targets a run needs made in the rootfs; what
// it made is removed after the run, so that a mount leaves no trace in
// the layer (a secret's name included).
type mountpoints struct {
	t    *fsx.Tree
	made []string
	// times are the times of the directories made in, put back after.
	times map[string][2]unix.Timespec
}

// keepTimes remembers the times of the existing directory p.
func (mp *mountpoints) keepTimes(p string) {
	if _, ok := mp.times[p]; ok {
		return
	}
	if st, err := contextdir.Lstat(mp.t, p); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		mp.times[p] = [2]unix.Timespec{st.Atim, st.Mtim}
	}
}

func newMountpoints(rootfs string, ms []Mount) (*mountpoints, error) {
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return nil, err
	}
	mp := &mountpoints{t: t, times: map[string][2]unix.Timespec{}}
	targets := make([]string, 0, len(ms))
	for _, m := range ms {
		targets = append(targets, m.Target)
	}
	sort.Strings(targets)
	for _, m := range ms {
		rel := strings.TrimPrefix(path.Clean(m.Target), "/")
		if rel == "" {
			continue
		}
		isDir := true
		if m.Type == "bind" {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				isDir = false
			}
		}
		if _, err := contextdir.Stat(t, rel); err == nil {
			continue
		}
		parent := parentOf(rel)
		for a := parent; a != ""; a = parentOf(a) {
			mp.keepTimes(a)
		}
		mp.keepTimes("")
		if parent != "" {
			fd, err := t.MkdirAll(parent, func(p string) { mp.made = append(mp.made, p) })
			if err != nil {
				mp.remove()
				return nil, err
			}
			unix.Close(fd)
		}
		mp.keepTimes(parent)
		pfd, err := t.Dir(parent)
		if err != nil {
			mp.remove()
			return nil, err
		}
		base := path.Base(rel)
		if isDir {
			err = unix.Mkdirat(pfd, base, 0o755)
		} else {
			var fd int
			fd, err = unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		}
		unix.Close(pfd)
		if err != nil {
			mp.remove()
			return nil, &os.PathError{Op: "mountpoint", Path: m.Target, Err: err}
		}
		mp.made = append(mp.made, rel)
	}
	return mp, nil
}

// remove takes away what newMountpoints made, deepest first, where it is
// still empty.
func (mp *mountpoints) remove() error {
	defer mp.t.Close()
	sort.Sort(sort.Reverse(sort.StringSlice(mp.made)))
	for _, p := range mp.made {
		pfd, err := mp.t.Dir(parentOf(p))
		if err != nil {
			continue
		}
		base := path.Base(p)
		var st unix.Stat_t
		if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				_ = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR)
			} else if st.Size == 0 {
				_ = unix.Unlinkat(pfd, base, 0)
			}
		}
		unix.Close(pfd)
	}
	// What held a mount point shows no trace of it, its times included.
	for p, ts := range mp.times {
		fd, err := mp.t.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		_ = fsx.Futimens(fd, &ts)
		unix.Close(fd)
	}
	return nil
}
