package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/tempdir"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/build/contextdir"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/vfs"
	"golang.org/x/sys/unix"
)

// builder is one Build.
type builder struct {
	o     Options
	f     *file
	ctxd  *contextdir.Dir
	cache *cache
	work  *tempdir.Dir
	// target and host platforms.
	target, host ocispec.Platform
	options      map[string]string
	meta         map[string]string
	stages       []*stage
	steps, step  int
	cached       int
	bundles      []string
	// images fetched for FROM and COPY --from, by name and platform.
	images map[string]*layout.Image
	// imageStages are the images COPY --from names, with their bundles.
	imageStages map[string]*stage
}

// stage is a stage's state while it is built.
type stage struct {
	idx  int
	name string
	// img is the image the stage has reached, in the cache layout, and
	// cfg its config; key is its cache key.
	img *layout.Image
	cfg *layout.Config
	key digest.Digest
	// args are the stage's build args.
	args *args
	// cfgs applies config instructions with the stage's memory (a CMD
	// before an ENTRYPOINT).
	cfgs *dockerfile.Applier
	// bundle is the stage's working container, if it has one, on the
	// layers of bundleImg.
	bundle    string
	bundleImg *layout.Image
	platform  ocispec.Platform
	done      bool
}

func newBuilder(o Options) (*builder, error) {
	if o.Store == nil {
		return nil, errors.New("build: no snapshot store")
	}
	if o.Context == "" {
		return nil, errors.New("build: no context directory")
	}
	if o.Driver == "" {
		o.Driver = vfs.Name
	}
	switch o.Network {
	case "", "host", "none":
	default:
		return nil, fmt.Errorf("build: network %q: want host or none", o.Network)
	}
	cf, err := findContainerfile(o)
	if err != nil {
		return nil, err
	}
	f, err := parseFile(cf)
	if err != nil {
		return nil, err
	}
	b := &builder{o: o, f: f, images: map[string]*layout.Image{}, imageStages: map[string]*stage{}}
	b.host = platforms.Normalize(platforms.DefaultSpec())
	b.target = b.host
	if o.Platform != nil {
		b.target = platforms.Normalize(*o.Platform)
	}
	b.options = map[string]string{}
	for k, v := range o.BuildArgs {
		if v != nil {
			b.options[k] = *v
			continue
		}
		for _, e := range o.Env {
			if ek, ev, ok := strings.Cut(e, "="); ok && ek == k {
				b.options[k] = ev
			}
		}
	}
	if b.meta, err = resolveMeta(f, b.options, platformArgs(b.target, b.host)); err != nil {
		return nil, err
	}
	for _, s := range f.stages {
		b.steps += 1 + len(s.Commands)
	}
	if b.ctxd, err = contextdir.Open(o.Context, cf); err != nil {
		return nil, err
	}
	if b.cache, err = openCache(o.Store.Root()); err != nil {
		b.ctxd.Close()
		return nil, err
	}
	sweepWork(o.Store)
	if b.work, err = tempdir.Make(filepath.Join(o.Store.Root(), BuildDir), workPrefix); err != nil {
		b.ctxd.Close()
		b.cache.close()
		return nil, fmt.Errorf("build: working directory: %w", err)
	}
	return b, nil
}

// close removes the build's bundles and working directory.
func (b *builder) close() error {
	// The steps a failed build finished are named too: the next build
	// starts from them, as Docker keeps a failed build's images.
	first := b.cache.flush()
	for _, dir := range b.bundles {
		if err := removeBundle(dir, b.o.Store.Options()); err != nil && first == nil {
			first = err
		}
	}
	if err := b.work.Remove(); err != nil && first == nil {
		first = err
	}
	b.ctxd.Close()
	if err := b.cache.close(); err != nil && first == nil {
		first = err
	}
	return first
}

// sweepWork removes the working directories of killed builds, their
// bundles first: a killed build as root leaves its overlay rootfs
// mounted, and its bundles' records keep their snapshots.
func sweepWork(s *snapshot.Store) {
	tempdir.SweepFunc(filepath.Join(s.Root(), BuildDir), workPrefix, func(dir string) {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				_ = removeBundle(filepath.Join(dir, e.Name()), s.Options())
			}
		}
	})
}

// removeBundle removes a build's bundle: its rootfs (unmounted), its
// record, its directory.
func removeBundle(dir string, so snapshot.StoreOptions) error {
	if err := bundle.Delete(dir, so); err != nil {
		// A bundle Unpack did not finish has no record; what is there
		// goes with the working directory.
		if _, rerr := bundle.ReadRecord(dir); rerr == nil {
			return err
		}
	}
	// A commit remounts the rootfs; whatever mounts are left go too.
	rootfs := filepath.Join(dir, snapshot.RootfsDir)
	for i := 0; i < 8; i++ {
		if ok, _ := overlay.IsMounted(rootfs); !ok {
			break
		}
		if err := unix.Unmount(rootfs, 0); err != nil {
			_ = unix.Unmount(rootfs, unix.MNT_DETACH)
		}
	}
	return fsx.RemoveAll(dir)
}

func (b *builder) build(ctx context.Context) (*Result, error) {
	if err := b.cache.importFrom(ctx, b.o.CacheFrom, b.o.Registry); err != nil {
		return nil, err
	}
	t, err := b.f.target(b.o.Target)
	if err != nil {
		return nil, err
	}
	need, err := b.needed(t)
	if err != nil {
		return nil, err
	}
	b.stages = make([]*stage, len(b.f.stages))
	for i := 0; i <= t; i++ {
		if !need[i] {
			continue
		}
		if err := b.buildStage(ctx, i); err != nil {
			return nil, err
		}
	}
	st := b.stages[t]
	if err := b.cache.flush(); err != nil {
		return nil, err
	}
	res := &Result{Manifest: st.img.Descriptor, Config: st.img.Manifest.Config.Digest, Steps: b.step, Cached: b.cached, Cache: b.cache.dir}
	if err := b.output(ctx, st.img); err != nil {
		return nil, err
	}
	if err := b.cache.exportTo(ctx, b.o.CacheTo, b.o.Registry); err != nil {
		return nil, err
	}
	return res, nil
}

// needed marks the stages the target depends on: its base stage, the
// stages COPY --from and RUN --mount from= name, recursively. Others are
// not built, as BuildKit skips them.
func (b *builder) needed(t int) (map[int]bool, error) {
	need := map[int]bool{}
	var mark func(i int) error
	mark = func(i int) error {
		if need[i] {
			return nil
		}
		need[i] = true
		s := b.f.stages[i]
		base, _, err := b.f.lex.ProcessWord(s.BaseName, (&args{options: b.options, meta: b.meta}).metaEnv())
		if err != nil {
			return fmt.Errorf("%s: line %d: %w", b.f.path, line(s.Location), err)
		}
		if j, ok := b.f.stageIndex(base, i); ok {
			if err := mark(j); err != nil {
				return err
			}
		}
		for _, c := range s.Commands {
			var froms []string
			switch c := c.(type) {
			case *instructions.CopyCommand:
				froms = append(froms, c.From)
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					froms = append(froms, m.From)
				}
			}
			for _, from := range froms {
				if from == "" {
					continue
				}
				if j, ok := b.f.stageIndex(from, i); ok {
					if err := mark(j); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	return need, mark(t)
}

// event reports a step.
func (b *builder) event(st *stage, text string, done, cached bool, took time.Duration) {
	if b.o.Progress == nil {
		return
	}
	b.o.Progress(Event{Stage: st.idx, StageName: st.name, Step: b.step, Steps: b.steps, Instruction: text, Done: done, Cached: cached, Took: took})
}

// env is what a stage's instructions expand with: the config's Env and
// the build args it does not set.
func (st *stage) env() ([]string, shell.EnvGetter, error) {
	var env []string
	if _, err := st.cfg.GetRuntime("Env", &env); err != nil {
		return nil, nil, err
	}
	all := append(append([]string{}, env...), st.args.filtered(env)...)
	return env, shell.EnvsFromSlice(all), nil
}

// created is the time a step's history entry and image get.
func (b *builder) created() time.Time {
	if b.o.Timestamp != nil {
		return b.o.Timestamp.UTC()
	}
	return time.Now().UTC()
}

// configJSON returns the config's top-level fields, for a commit to take
// them over.
func configFields(cfg *layout.Config) (map[string]json.RawMessage, error) {
	raw, err := cfg.Bytes()
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// ensureBundle gives the stage a working container on its current
// image's layers.
func (b *builder) ensureBundle(ctx context.Context, st *stage) error {
	if st.bundle != "" && sameLayers(st.bundleImg, st.img) {
		return nil
	}
	if st.bundle != "" {
		if err := removeBundle(st.bundle, b.o.Store.Options()); err != nil {
			return err
		}
		st.bundle = ""
	}
	dir := filepath.Join(b.work.Path, fmt.Sprintf("stage%d-%d", st.idx, len(b.bundles)))
	b.bundles = append(b.bundles, dir)
	rec, err := bundle.Unpack(ctx, b.o.Store, b.cache.l, "@"+st.img.Descriptor.Digest.String(), dir, bundle.UnpackOptions{Driver: b.o.Driver, OnFallback: b.fallback})
	if err != nil {
		return err
	}
	if rec.Driver != b.o.Driver {
		// Overlay did not work: every later bundle uses vfs too.
		b.o.Driver = rec.Driver
	}
	st.bundle, st.bundleImg = dir, st.img
	return nil
}

// fallback passes the overlay fallback on once.
func (b *builder) fallback(reason error) {
	if b.o.OnFallback != nil {
		b.o.OnFallback(reason)
		b.o.OnFallback = func(error) {}
		return
	}
}

// sameLayers says whether two images have the same layers.
func sameLayers(a, c *layout.Image) bool {
	if a == nil || c == nil {
		return false
	}
	x, y := a.Config.RootFS.DiffIDs, c.Config.RootFS.DiffIDs
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// rootfs is the stage's bundle's root file system.
func (st *stage) rootfs() string { return filepath.Join(st.bundle, snapshot.RootfsDir) }

// commit turns what the step changed in the stage's bundle into its
// image, named by key in the cache.
func (b *builder) commit(ctx context.Context, st *stage, key digest.Digest, createdBy string) error {
	fields, err := configFields(st.cfg)
	if err != nil {
		return err
	}
	res, err := bundle.Commit(ctx, st.bundle, b.cache.l, bundle.CommitOptions{
		Ref:       cacheRef(key),
		CreatedBy: createdBy,
		Timestamp: b.o.Timestamp,
		Edit: func(c *layout.Config) error {
			// The commit starts from the bundle's image, which has the
			// stage's layers; the config is the stage's.
			for k, v := range fields {
				if k == "created" {
					continue
				}
				if err := c.Set(k, v); err != nil {
					return err
				}
			}
			return nil
		},
		StoreOptions: b.o.Store.Options(),
	})
	if err != nil {
		return err
	}
	img, err := b.cache.l.ReadImage(res.Manifest)
	if err != nil {
		return err
	}
	b.cache.remember(key, res.Manifest)
	if err := b.setImage(st, img); err != nil {
		return err
	}
	st.bundleImg = img
	st.key = key
	return nil
}

// configStep stores the stage's config, changed by a config-only
// instruction, as the step's image: the same layers, an empty_layer
// history entry.
func (b *builder) configStep(st *stage, cfg *layout.Config, key digest.Digest, createdBy string) error {
	created := b.created()
	if err := cfg.Set("created", created); err != nil {
		return err
	}
	if err := cfg.AppendHistory(ocispec.History{Created: &created, CreatedBy: createdBy, EmptyLayer: true}); err != nil {
		return err
	}
	img, err := b.cache.putImage(cfg, st.img.Manifest.Layers)
	if err != nil {
		return err
	}
	b.cache.name(key, img.Descriptor)
	if err := b.setImage(st, img); err != nil {
		return err
	}
	st.key = key
	return nil
}

// hit looks the step up in the cache and, when found, moves the stage
// onto it.
func (b *builder) hit(st *stage, key digest.Digest) (bool, error) {
	if b.o.NoCache {
		return false, nil
	}
	img, ok, err := b.cache.lookup(key)
	if err != nil || !ok {
		return false, err
	}
	if err := b.setImage(st, img); err != nil {
		return false, err
	}
	st.key = key
	b.cached++
	return true, nil
}

// shellOf is the stage's shell for shell-form commands.
func (st *stage) shellOf() ([]string, error) {
	var sh []string
	if _, err := st.cfg.GetRuntime("Shell", &sh); err != nil {
		return nil, err
	}
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return sh, nil
}

// nop is how Docker's builder records an instruction that runs nothing
// in created_by.
func (st *stage) nop(text string) (string, error) {
	sh, err := st.shellOf()
	if err != nil {
		return "", err
	}
	return strings.Join(append(sh, "#(nop) ", text), " "), nil
}

// wrap names the Containerfile line of a failed step.
func (b *builder) wrap(c instructions.Command, text string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%s: line %d: %s: %w: %w", b.f.path, line(c.Location()), text, ErrInstruction, err)
}

// exists reports whether name exists in the stage's rootfs.
func exists(rootfs, name string) (bool, os.FileInfo) {
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return false, nil
	}
	defer t.Close()
	fd, err := t.Open(strings.TrimPrefix(name, "/"), unix.O_PATH, 0)
	if err != nil {
		return false, nil
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, nil
	}
	return true, fi
}
