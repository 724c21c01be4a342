package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// syncImages is how many images the sync workloads copy: each is the
// dataset's base image plus a small layer of its own.
const syncImages = 10

// syncRegistry is the registry serving the sync and push workloads (the
// suite's startRegistry, a docker-registry on loopback that dies with the
// suite), started once and holding syncImages images per compression as
// bench/<kind>/app:NN. It is not mutate.go's benchReg: its storage and the
// images pushed to it are its own, so neither workload times the other's.
type syncRegistry struct {
	once sync.Once
	host string
	err  error
	// pushed records, per compression, that its images are there.
	mu     sync.Mutex
	pushed map[compression.Kind]error
}

var theRegistry = &syncRegistry{pushed: map[compression.Kind]error{}}

// start runs the registry with its storage in dir.
func (r *syncRegistry) start(dir string) (string, error) {
	r.once.Do(func() { r.host, r.err = startRegistry(dir) })
	return r.host, r.err
}

// images makes sure the registry holds the syncImages images of
// compression k, built from the dataset's base image, and returns the
// registry's host.
func (r *syncRegistry) images(e *env, k compression.Kind, cache string) (string, error) {
	host, err := r.start(filepath.Join(filepath.Dir(filepath.Dir(cache)), "sync-registry"))
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err, done := r.pushed[k]; done {
		return host, err
	}
	err = pushSyncImages(e, k, host, filepath.Join(filepath.Dir(cache), "sync-src-"+string(k)))
	r.pushed[k] = err
	return host, err
}

// pushSyncImages builds the images in a layout at dir and pushes them.
func pushSyncImages(e *env, k compression.Kind, host, dir string) error {
	if err := copyLayout(e.Data.Layouts[k], dir); err != nil {
		return err
	}
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	base, err := l.Image("base", nil)
	if err != nil {
		return err
	}
	for i := range syncImages {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		body := bytes.Repeat([]byte(fmt.Sprintf("image %d\n", i)), 4096)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("etc/app-%d", i), Mode: 0o644, Size: int64(len(body))}); err != nil {
			return err
		}
		tw.Write(body)
		tw.Close()
		ly, err := l.PutLayer(context.Background(), &buf, layout.WithCompression(k))
		if err != nil {
			return err
		}
		cfg, err := layout.ParseConfig(mustRead(l, base.Manifest.Config))
		if err != nil {
			return err
		}
		if err := cfg.AppendLayer(ly.DiffID); err != nil {
			return err
		}
		md, err := l.PutImage(cfg, append(append([]ocispec.Descriptor(nil), base.Manifest.Layers...), ly.Descriptor), nil)
		if err != nil {
			return err
		}
		name := fmt.Sprintf("app%02d", i)
		if err := l.Tag(md, name); err != nil {
			return err
		}
		if err := quietArgv(e.Strata.argv("push", dir+":"+name, fmt.Sprintf("%s/bench/%s/app:%02d", host, k, i))); err != nil {
			return err
		}
	}
	return nil
}

func mustRead(l *layout.Layout, d ocispec.Descriptor) []byte {
	b, _ := l.ReadBlob(d, layout.MaxConfigSize)
	return b
}

// dirSize is the bytes the regular files under dir hold.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// syncSizes holds the size of the last skopeo sync per compression: the
// strata side's check compares against it.
var syncSizes sync.Map

// syncWorkload syncs syncImages images sharing the base layer from a
// local registry into a directory: strata sync into one layout against
// skopeo sync --src docker --dest dir (a directory per image); then a
// second, unchanged strata sync.
func syncWorkload(e *env, k compression.Kind) *workload {
	wl := &workload{Name: "sync", Kind: k, Needs: []string{"sync --json", "push"}}
	repo := func(w *work) (string, error) {
		host, err := theRegistry.images(e, k, w.Cache)
		return fmt.Sprintf("%s/bench/%s/app", host, k), err
	}
	var repoName string
	setup := func(w *work) error {
		r, err := repo(w)
		repoName = r
		return err
	}
	dst := func(w *work) string { return filepath.Join(w.Dir, "dst") }
	checkStrata := func(w *work) error {
		n, err := dirSize(dst(w))
		if err != nil {
			return err
		}
		if v, ok := syncSizes.Load(k); ok && n*3 > v.(int64) {
			return fmt.Errorf("strata's directory is %d bytes, more than a third of skopeo's %d", n, v.(int64))
		}
		return checkSyncNames(dst(w))
	}
	strata := side{
		Label: "strata sync", Role: roleStrata, Tools: []string{"docker-registry"},
		Setup: setup,
		Argv:  func(w *work) []string { return e.Strata.argv("sync", "docker://"+repoName, dst(w)) },
		Check: checkStrata,
	}
	again := side{
		Label: "strata sync, unchanged", Role: roleStrata, Tools: []string{"docker-registry"},
		Setup: func(w *work) error {
			if err := setup(w); err != nil {
				return err
			}
			return quietArgv(e.Strata.argv("sync", "docker://"+repoName, dst(w)))
		},
		Argv:  func(w *work) []string { return e.Strata.argv("sync", "docker://"+repoName, dst(w)) },
		Check: func(w *work) error { return checkSyncNames(dst(w)) },
	}
	skopeo := side{
		Label: "skopeo sync --src docker --dest dir", Role: rolePeer, Tools: []string{"skopeo", "docker-registry"},
		Setup: setup,
		Argv: func(w *work) []string {
			return []string{"skopeo", "sync", "--src", "docker", "--dest", "dir", "--src-tls-verify=false", repoName, dst(w)}
		},
		Check: func(w *work) error {
			n, err := dirSize(dst(w))
			if err == nil {
				syncSizes.Store(k, n)
			}
			return err
		},
	}
	wl.Sides = []side{skopeo, strata, again}
	// The targets: 3 x skopeo, and an unchanged second sync
	// under a second (the directory's third of skopeo's size is
	// checkStrata's).
	wl.Targets = []target{target2(strata.Label, skopeo.Label, 3), {Strata: again.Label, Within: time.Second}}
	return wl
}

// checkSyncNames checks a synced layout names every image.
func checkSyncNames(dir string) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	idx, err := l.Index()
	if err != nil {
		return err
	}
	if n := len(idx.Manifests); n != syncImages {
		return fmt.Errorf("%s names %d images, want %d", dir, n, syncImages)
	}
	return nil
}

// pushMountedWorkload pushes an image to a repository of a registry that
// holds its blobs in another repository, where the last push left them:
// strata mounts them from what its location cache recorded, as skopeo
// does from its blob-info cache.
func pushMountedWorkload(e *env, k compression.Kind) *workload {
	wl := &workload{Name: "push-mounted", Kind: k, Needs: []string{"push", "sync --json"}}
	var host string
	src := func(w *work) string { return filepath.Join(filepath.Dir(w.Cache), "sync-src-"+string(k)) }
	dest := func(w *work, tool, which string) string {
		return fmt.Sprintf("%s/bench/%s/%s-%s-%s:1", host, k, tool, which, strings.ToLower(filepath.Base(w.Dir)))
	}
	setupWith := func(first func(w *work) []string) func(w *work) error {
		return func(w *work) error {
			h, err := theRegistry.images(e, k, w.Cache)
			host = h
			if err != nil {
				return err
			}
			return quietArgv(first(w))
		}
	}
	strata := side{
		Label: "strata push", Role: roleStrata, Tools: []string{"docker-registry"},
		Setup: setupWith(func(w *work) []string { return e.Strata.argv("push", src(w)+":app00", dest(w, "strata", "a")) }),
		Argv:  func(w *work) []string { return e.Strata.argv("push", src(w)+":app00", dest(w, "strata", "b")) },
	}
	skopeo := side{
		Label: "skopeo copy", Role: rolePeer, Tools: []string{"skopeo", "docker-registry"},
		Setup: setupWith(func(w *work) []string {
			return []string{"skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:" + src(w) + ":app00", "docker://" + dest(w, "skopeo", "a")}
		}),
		Argv: func(w *work) []string {
			return []string{"skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:" + src(w) + ":app00", "docker://" + dest(w, "skopeo", "b")}
		},
	}
	wl.Sides = []side{strata, skopeo}
	wl.Targets = []target{target2(strata.Label, skopeo.Label, 1)}
	return wl
}
