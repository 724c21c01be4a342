package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// The build workloads (issue 21): a five-step Containerfile on the
// minbase image, built cold, rebuilt unchanged and rebuilt after a
// one-file change, by strata build and buildah bud with matching storage
// (vfs, overlay).

// benchContainerfile is the five steps after FROM.
const benchContainerfile = `FROM %s
RUN echo built > /built && mkdir -p /app
COPY app/ /app/
RUN ls -lR /app > /app.list && wc -l /app.list
ENV APP=/app
CMD ["/bin/sh"]
`

// build runs strata build with a store of its own, tagging out:img.
func (c strataCLI) build(driver, root, ctx, out string) []string {
	return c.argv("build", "--root", root, "--driver", driver, "-t", out+":img", ctx)
}

// buildah is a buildah command line with storage of its own under dir.
func buildah(driver, dir string, args ...string) []string {
	return append([]string{"buildah", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--storage-driver", driver}, args...)
}

// buildahBud is buildah bud with chroot isolation: crun refuses these
// machines' hybrid cgroups, and chroot is buildah's fastest way to run a
// step (no runtime, no namespaces to set up).
func buildahBud(driver, dir, layers, ctx string) []string {
	return buildah(driver, dir, "bud", "--isolation", "chroot", layers, "-t", "img", ctx)
}

// buildContext writes the context: the Containerfile FROM base and an
// app/ directory of 50 small files.
func buildContext(dir, base string) error {
	app := filepath.Join(dir, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return err
	}
	for i := 0; i < 50; i++ {
		body := strings.Repeat(fmt.Sprintf("line %d of file %d\n", i, i), 20)
		if err := os.WriteFile(filepath.Join(app, fmt.Sprintf("f%02d.txt", i)), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(fmt.Sprintf(benchContainerfile, base)), 0o644)
}

// changeOneSource is the one-file change between builds.
func changeOneSource(ctx string) error {
	return os.WriteFile(filepath.Join(ctx, "app", "f07.txt"), []byte("changed\n"), 0o644)
}

// checkBuilt verifies strata's image: the base's layer and four more.
func checkBuilt(dir string) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	img, err := l.Image("img", nil)
	if err != nil {
		return err
	}
	if n := len(img.Manifest.Layers); n != 4 {
		return fmt.Errorf("built image has %d layers, want 4", n)
	}
	return nil
}

// buildMode is one build workload: what runs before the timed build
// (nil: nothing, a cold build) and the speed-up strata must reach.
type buildMode struct {
	name   string
	before func(w *work, build func() error) error
	ratio  float64
}

// buildWorkloads are the three build workloads, gzip layers only (the
// base image's compression; builds write gzip).
func buildWorkloads(e *env) []*workload {
	modes := []buildMode{
		{"build-cold", nil, 1.5},
		{"build-unchanged", func(w *work, build func() error) error { return build() }, 5},
		{"build-1file", func(w *work, build func() error) error {
			if err := build(); err != nil {
				return err
			}
			return changeOneSource(filepath.Join(w.Dir, "ctx"))
		}, 3},
	}
	var out []*workload
	for _, m := range modes {
		wl := &workload{Name: m.name, Kind: compression.Gzip, Needs: []string{"build --driver --tag"}}
		for _, drv := range e.Drivers {
			drv := drv
			strataLabel := "strata build (" + drv + ")"
			buildahLabel := "buildah bud (" + drv + ")"
			layers := "--layers=false"
			if m.before != nil {
				layers = "--layers"
			}
			strataArgv := func(w *work) []string {
				return e.Strata.build(drv, filepath.Join(w.Dir, "store"), filepath.Join(w.Dir, "ctx"), filepath.Join(w.Dir, "out"))
			}
			buildahArgv := func(w *work) []string {
				return buildahBud(drv, filepath.Join(w.Dir, "buildah"), layers, filepath.Join(w.Dir, "ctx"))
			}
			wl.Sides = append(wl.Sides, side{
				Label: strataLabel,
				Role:  roleStrata,
				Tools: []string{"crun"},
				Setup: buildSetup(e, m, strataArgv),
				Argv:  strataArgv,
				Check: func(w *work) error { return checkBuilt(filepath.Join(w.Dir, "out")) },
			}, side{
				Label: buildahLabel,
				Role:  rolePeer,
				Tools: []string{"buildah"},
				Setup: buildSetup(e, m, buildahArgv),
				Argv:  buildahArgv,
				Check: func(w *work) error {
					if err := quietArgv(buildah(drv, filepath.Join(w.Dir, "buildah"), "inspect", "img")); err != nil {
						return errors.New("buildah has no image img after the build")
					}
					return nil
				},
			})
			wl.Targets = append(wl.Targets, target2(strataLabel, buildahLabel, m.ratio))
		}
		out = append(out, wl)
	}
	return out
}

// buildSetup gives a build side its base image and context and, for a
// rebuild, runs the first build (argv) and what the mode does after it.
func buildSetup(e *env, m buildMode, argv func(w *work) []string) func(w *work) error {
	return func(w *work) error {
		l := filepath.Join(w.Dir, "base")
		if err := copyLayout(e.Data.Layouts[compression.Gzip], l); err != nil {
			return err
		}
		if err := buildContext(filepath.Join(w.Dir, "ctx"), "oci:"+l+":base"); err != nil {
			return err
		}
		if m.before == nil {
			return nil
		}
		return m.before(w, func() error { return quietArgv(argv(w)) })
	}
}
