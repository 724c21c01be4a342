package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// strataCLI builds strata command lines. Every strata invocation of the
// suite is here, so a change of the CLI is a change of this one place;
// the Needs of each workload name the same subcommands and flags.
type strataCLI struct{ Bin string }

func (c strataCLI) argv(args ...string) []string {
	return append([]string{c.Bin, "--quiet"}, args...)
}

func (c strataCLI) importTar(k compression.Kind, tarball, ref string) []string {
	return c.argv("import", "--compression", string(k), tarball, ref)
}

// unpack makes a bundle at dir with a snapshot store of its own at root,
// so every run starts with no layer extracted (a cold unpack, as umoci's
// always is).
func (c strataCLI) unpack(driver, root, ref, dir string) []string {
	return c.argv("unpack", "--root", root, "--driver", driver, ref, dir)
}

// commit finds the snapshot store through the bundle's record.
func (c strataCLI) commit(k compression.Kind, bundle, ref string) []string {
	return c.argv("commit", "--compression", string(k), bundle, ref)
}

func (c strataCLI) save(ref, out string) []string {
	return c.argv("save", "-o", out, ref)
}

func (c strataCLI) saveOCI(ref, out string) []string {
	return c.argv("save", "--format", "oci-archive", "-o", out, ref)
}

func (c strataCLI) copy(src, dst string) []string { return c.argv("copy", src, dst) }
func (c strataCLI) gc(dir string) []string        { return c.argv("gc", dir) }
func (c strataCLI) fsck(dir string) []string      { return c.argv("fsck", dir) }

// env is what workload definitions need to know about this machine.
type env struct {
	Strata strataCLI
	Data   *dataset
	// Drivers are the strata snapshot drivers to time (overlay, vfs).
	Drivers []string
	// CraneMissing says why crane cannot run, or is empty.
	CraneMissing string
}

// workloads lists every workload for every compression, a workload's
// compressions next to each other. To add one, write a function that
// returns it with its sides and append it here.
func workloads(e *env) []*workload {
	makers := []func(*env, compression.Kind) *workload{
		importWorkload,
		unpackWorkload,
		unpackSharedWorkload,
		func(e *env, k compression.Kind) *workload { return commitWorkload(e, k, "commit-1file", changeOneFile) },
		func(e *env, k compression.Kind) *workload { return commitWorkload(e, k, "commit-large", changeLarge) },
		saveWorkload,
		copyWorkload,
		gcWorkload,
		fsckWorkload, syncWorkload, pushMountedWorkload,
		mutateWorkload, appendWorkload,
		exportWorkload, flattenWorkload, exportBaseWorkload, flattenBaseWorkload,
	}
	var out []*workload
	for _, mk := range makers {
		for _, k := range kinds {
			out = append(out, mk(e, k))
		}
	}
	out = append(out, buildWorkloads(e)...)
	return out
}

func sh(script string) []string { return []string{"/bin/sh", "-ec", script} }

// q quotes a path for sh.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func importWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	wl := &workload{Name: "import", Kind: k, Needs: []string{"import --compression"}}
	strata := side{
		Label: "strata import",
		Role:  roleStrata,
		Argv:  func(w *work) []string { return e.Strata.importTar(k, ds.BaseTar, filepath.Join(w.Dir, "l")+":bench") },
		Check: func(w *work) error { return checkOneLayer(filepath.Join(w.Dir, "l"), "bench", k) },
	}
	umoci := side{
		Label: "umoci raw add-layer",
		Role:  rolePeer,
		Tools: []string{"umoci"},
		Setup: func(w *work) error {
			l := filepath.Join(w.Dir, "l")
			if err := quiet("umoci", "init", "--layout", l); err != nil {
				return err
			}
			return quiet("umoci", "new", "--image", l+":bench")
		},
		Argv: func(w *work) []string {
			return []string{"umoci", "raw", "add-layer", "--image", filepath.Join(w.Dir, "l") + ":bench", ds.BaseTar}
		},
		Check: func(w *work) error { return checkOneLayer(filepath.Join(w.Dir, "l"), "bench", k) },
	}
	crane := side{
		Label:       "crane append",
		Role:        rolePeer,
		Tools:       []string{"crane"},
		Unavailable: e.CraneMissing,
		Argv: func(w *work) []string {
			return []string{"crane", "append", "--oci-empty-base", "-f", ds.BaseTar, "-t", "bench:latest", "-o", filepath.Join(w.Dir, "out.tar")}
		},
	}
	var limit side
	if k == compression.Gzip {
		limit = side{Label: "pigz -c (compress only)", Role: roleLimit, Tools: []string{"pigz"},
			Argv: func(w *work) []string { return sh("pigz -c " + q(ds.BaseTar) + " > out.gz") }}
	} else {
		umoci.Unavailable = "n/a (umoci 0.4.7 writes only gzip layers)"
		crane.Unavailable = "n/a (crane append writes only gzip layers)"
		limit = side{Label: "zstd -T0 (compress only)", Role: roleLimit, Tools: []string{"zstd"},
			Argv: func(w *work) []string { return sh("zstd -q -T0 -c " + q(ds.BaseTar) + " > out.zst") }}
	}
	wl.Sides = []side{strata, umoci, crane, limit}
	wl.Targets = []target{{Strata: strata.Label, Peer: umoci.Label, MinRatio: 1}}
	return wl
}

// checkOneLayer verifies that an import made image ref with one layer of
// compression k.
func checkOneLayer(dir, ref string, k compression.Kind) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	img, err := l.Image(ref, nil)
	if err != nil {
		return err
	}
	if n := len(img.Manifest.Layers); n != 1 {
		return fmt.Errorf("image %s:%s has %d layers, want 1", dir, ref, n)
	}
	if mt := img.Manifest.Layers[0].MediaType; !strings.HasSuffix(mt, "+"+string(k)) && !strings.HasSuffix(mt, "."+string(k)) {
		return fmt.Errorf("image %s:%s has a %s layer, want %s", dir, ref, mt, k)
	}
	return nil
}

func unpackWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	src := ds.Layouts[k] + ":full"
	wl := &workload{Name: "unpack", Kind: k, Needs: []string{"unpack --driver --root"}}
	for _, drv := range e.Drivers {
		wl.Sides = append(wl.Sides, side{
			Label: "strata unpack (" + drv + ")",
			Role:  roleStrata,
			Argv: func(w *work) []string {
				return e.Strata.unpack(drv, filepath.Join(w.Dir, "store"), src, filepath.Join(w.Dir, "bundle"))
			},
			Check: func(w *work) error { return checkRootfs(filepath.Join(w.Dir, "bundle", "rootfs"), ds.Plan) },
		})
	}
	wl.Sides = append(wl.Sides, side{
		Label:       "umoci unpack",
		Role:        rolePeer,
		Tools:       []string{"umoci"},
		Unavailable: umociNoZstd(k),
		Argv: func(w *work) []string {
			return []string{"umoci", "unpack", "--image", src, filepath.Join(w.Dir, "bundle")}
		},
		Check: func(w *work) error { return checkRootfs(filepath.Join(w.Dir, "bundle", "rootfs"), ds.Plan) },
	})
	dec, script := tarLayersScript(ds, k, ds.Layers[k])
	wl.Sides = append(wl.Sides, side{
		Label: dec + " | tar -x (no whiteouts)",
		Role:  roleLimit,
		Tools: []string{strings.Fields(dec)[0], "tar"},
		Argv:  func(w *work) []string { return sh(script) },
	})
	for _, drv := range e.Drivers {
		wl.Targets = append(wl.Targets,
			target{Strata: "strata unpack (" + drv + ")", Peer: "umoci unpack", MinRatio: 2},
			target{Strata: "strata unpack (" + drv + ")", Peer: dec + " | tar -x (no whiteouts)", MinRatio: 1 / 1.2})
	}
	return wl
}

// umociNoZstd says why umoci cannot take part with zstd layers: Debian
// 12's umoci 0.4.7 refuses the zstd layer media type ("blob is not correct
// mediatype").
func umociNoZstd(k compression.Kind) string {
	if k == compression.Zstd {
		return "n/a (umoci 0.4.7 cannot read zstd layers)"
	}
	return ""
}

// checkRootfs verifies an unpacked tree: files of all three layers are
// there, and what the third layer deletes is not.
func checkRootfs(rootfs string, plan changesPlan) error {
	for _, p := range []string{"usr/bin/dpkg", "usr/local/go/bin/go", "opt/bench/link09.bin", filepath.Join(plan.Opaque, "README.strata-bench")} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err != nil {
			return fmt.Errorf("unpacked rootfs lacks %s: %w", p, err)
		}
	}
	gone := append([]string{plan.DeletedDir}, plan.Deleted...)
	for _, p := range gone {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); err == nil {
			return fmt.Errorf("unpacked rootfs still has %s, which the top layer deletes", p)
		}
	}
	a, err := os.Stat(filepath.Join(rootfs, "opt/bench/data.bin"))
	if err != nil {
		return err
	}
	b, err := os.Stat(filepath.Join(rootfs, "opt/bench/link00.bin"))
	if err != nil {
		return err
	}
	if !os.SameFile(a, b) {
		return errors.New("unpacked rootfs: opt/bench/link00.bin is not a hard link of opt/bench/data.bin")
	}
	return nil
}

// A change made to an unpacked rootfs before a commit.
type change func(rootfs string) error

func changeOneFile(rootfs string) error {
	return os.WriteFile(filepath.Join(rootfs, "etc", "bench-commit"), []byte("one changed file\n"), 0o644)
}

// changeLarge adds 2,000 new files (about 100 MB, half of it
// compressible), rewrites the toolchain's binaries' directory and deletes
// a documentation tree.
func changeLarge(rootfs string) error {
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 100<<10)
	for i := 0; i < 2000; i++ {
		dir := filepath.Join(rootfs, "srv", "bench", fmt.Sprintf("d%02d", i%40))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		n := 10<<10 + rng.IntN(80<<10)
		for j := 0; j < n; j += 8 {
			v := rng.Uint64()
			if j%(16<<10) < 8<<10 {
				v &= 0x0f0f0f0f0f0f0f0f // compressible half
			}
			for b := 0; b < 8 && j+b < n; b++ {
				buf[j+b] = byte(v >> (8 * b))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), buf[:n], 0o644); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(rootfs, "usr/share/doc")); err != nil {
		return err
	}
	bins, _ := filepath.Glob(filepath.Join(rootfs, "usr/local/go/bin/*"))
	for _, b := range bins {
		f, err := os.OpenFile(b, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		_, err = f.Write([]byte("\x00strata-bench"))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// commitWorkload times a commit of a change to an unpacked bundle. The
// bundles are made in untimed setup from state kept across runs (see
// work.Cache), as they would be on a machine that unpacked the image
// before: strata unpacks from a warm snapshot store (overlay mounts, vfs
// copies the rootfs); umoci's bundle is a cp -a of one umoci unpack, which
// keeps everything its mtree manifest records.
func commitWorkload(e *env, k compression.Kind, name string, ch change) *workload {
	wl := &workload{Name: name, Kind: k, Needs: []string{"unpack --driver --root", "commit --compression"}}
	for _, drv := range e.Drivers {
		wl.Sides = append(wl.Sides, commitStrataSide(e, k, drv, ch))
		target := 3.0
		if drv == "overlay" {
			target = 20
		}
		switch {
		case name == "commit-1file":
			wl.Targets = append(wl.Targets, target2("strata commit ("+drv+")", "umoci repack", target))
		case k == compression.Gzip:
			wl.Targets = append(wl.Targets, target2("strata commit ("+drv+")", tarGzip1, 1/1.3))
		default:
			// zstd is to beat the gzip reference outright.
			wl.Targets = append(wl.Targets, target2("strata commit ("+drv+")", tarGzip1, 1))
		}
	}
	if name != "commit-1file" {
		wl.Sides = append(wl.Sides, commitFloorSide(e.Data, ch))
	}
	wl.Sides = append(wl.Sides, umociRepackSide(e.Data, k, ch))
	return wl
}

// commitStrataSide is strata's commit with the driver drv.
func commitStrataSide(e *env, k compression.Kind, drv string, ch change) side {
	ds := e.Data
	return side{
		Label: "strata commit (" + drv + ")",
		Role:  roleStrata,
		Setup: func(w *work) error {
			l := filepath.Join(w.Dir, "l")
			if err := copyLayout(ds.Layouts[k], l); err != nil {
				return err
			}
			if err := quietArgv(e.Strata.unpack(drv, filepath.Join(w.Cache, "store"), l+":full", filepath.Join(w.Dir, "bundle"))); err != nil {
				return err
			}
			return ch(filepath.Join(w.Dir, "bundle", "rootfs"))
		},
		Argv: func(w *work) []string {
			return e.Strata.commit(k, filepath.Join(w.Dir, "bundle"), filepath.Join(w.Dir, "l")+":new")
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "new", 4) },
	}
}

// commitFloorSide is the floor for a large change: archive and compress
// the changed files and nothing else (no diff, no hashing, no blob
// store).
func commitFloorSide(ds *dataset, ch change) side {
	return side{
		Label: tarGzip1,
		Role:  roleLimit,
		Tools: []string{"tar", "gzip"},
		Setup: func(w *work) error {
			// The change rewrites the toolchain's binaries: start from them.
			dir := filepath.Join(w.Dir, "changed")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := quiet("tar", "-C", dir, "-xf", ds.GoTar, "--wildcards", "usr/local/go/bin/*"); err != nil {
				return err
			}
			return ch(dir)
		},
		Argv: func(w *work) []string {
			return sh("tar -C " + q(filepath.Join(w.Dir, "changed")) + " -cf - . | gzip -1 > out.gz")
		},
	}
}

// umociRepackSide is umoci's commit: repack of a copy of one umoci unpack.
func umociRepackSide(ds *dataset, k compression.Kind, ch change) side {
	return side{
		Label:       "umoci repack",
		Role:        rolePeer,
		Tools:       []string{"umoci"},
		Unavailable: umociNoZstd(k),
		Setup: func(w *work) error {
			l := filepath.Join(w.Dir, "l")
			if err := copyLayout(ds.Layouts[k], l); err != nil {
				return err
			}
			pristine := filepath.Join(w.Cache, "bundle")
			if _, err := os.Stat(filepath.Join(pristine, "umoci.json")); err != nil {
				if err := os.MkdirAll(w.Cache, 0o755); err != nil {
					return err
				}
				if err := quiet("umoci", "unpack", "--image", ds.Layouts[k]+":full", pristine); err != nil {
					return err
				}
			}
			if err := quiet("cp", "-a", pristine, filepath.Join(w.Dir, "bundle")); err != nil {
				return err
			}
			return ch(filepath.Join(w.Dir, "bundle", "rootfs"))
		},
		Argv: func(w *work) []string {
			return []string{"umoci", "repack", "--image", filepath.Join(w.Dir, "l") + ":new", filepath.Join(w.Dir, "bundle")}
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "new", 4) },
	}
}

// tarGzip1 is the large commit's reference: the same changed files through
// tar and single-threaded gzip -1.
const tarGzip1 = "tar -c | gzip -1 (changed files only)"

func target2(s, p string, r float64) target { return target{Strata: s, Peer: p, MinRatio: r} }

// checkLayers verifies that image ref of the layout at dir has n layers.
func checkLayers(dir, ref string, n int) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	img, err := l.Image(ref, nil)
	if err != nil {
		return err
	}
	if got := len(img.Manifest.Layers); got != n {
		return fmt.Errorf("image %s:%s has %d layers, want %d", dir, ref, got, n)
	}
	for _, d := range img.Manifest.Layers {
		if !l.Blobs().Has(d.Digest, d.Size) {
			return fmt.Errorf("image %s:%s: layer %s is missing", dir, ref, d.Digest)
		}
	}
	return nil
}

// saveWorkload writes the image as a docker-archive when its layers are
// gzip, and as an oci-archive when they are zstd, which docker 20.10 cannot
// load (strata refuses, skopeo fails).
func saveWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	src := ds.Layouts[k] + ":full"
	out := func(w *work) string { return filepath.Join(w.Dir, "out.tar") }
	if k == compression.Zstd {
		wl := &workload{Name: "save", Kind: k, Needs: []string{"save -o --format"}}
		check := func(w *work) error { return checkArchive(out(w), "index.json", 3) }
		wl.Sides = []side{
			{Label: "strata save --format oci-archive", Role: roleStrata, Check: check,
				Argv: func(w *work) []string { return e.Strata.saveOCI(src, out(w)) }},
			{Label: "skopeo copy oci-archive:", Role: rolePeer, Tools: []string{"skopeo"}, Check: check,
				Argv: func(w *work) []string {
					return []string{"skopeo", "copy", "-q", "oci:" + src, "oci-archive:" + out(w) + ":full"}
				}},
		}
		wl.Targets = []target{target2(wl.Sides[0].Label, wl.Sides[1].Label, 2)}
		return wl
	}
	wl := &workload{Name: "save", Kind: k, Needs: []string{"save -o"}}
	check := func(w *work) error { return checkArchive(out(w), "manifest.json", 3) }
	wl.Sides = []side{
		{Label: "strata save", Role: roleStrata, Check: check,
			Argv: func(w *work) []string { return e.Strata.save(src, out(w)) }},
		{Label: "skopeo copy docker-archive:", Role: rolePeer, Tools: []string{"skopeo"}, Check: check,
			Argv: func(w *work) []string {
				return []string{"skopeo", "copy", "-q", "oci:" + src, "docker-archive:" + out(w) + ":bench/full:latest"}
			}},
	}
	wl.Targets = []target{target2("strata save", "skopeo copy docker-archive:", 2)}
	return wl
}

// checkArchive reads the headers of an image archive (skipping contents)
// and checks it has the file index (manifest.json for a docker-archive,
// index.json for an oci-archive) and at least layers further files.
func checkArchive(p, index string, layers int) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	manifest, n := false, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if strings.TrimPrefix(h.Name, "./") == index {
			manifest = true
		}
		if h.Typeflag == tar.TypeReg {
			n++
		}
	}
	if !manifest {
		return fmt.Errorf("%s has no %s", p, index)
	}
	if n < layers+1 {
		return fmt.Errorf("%s holds %d files, want at least %d", p, n, layers+1)
	}
	return nil
}

func copyWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	src := ds.Layouts[k] + ":full"
	dst := func(w *work) string { return filepath.Join(w.Dir, "dst") }
	wl := &workload{Name: "copy", Kind: k, Needs: []string{"copy"}}
	wl.Sides = []side{
		{
			Label: "strata copy",
			Role:  roleStrata,
			Argv:  func(w *work) []string { return e.Strata.copy(src, dst(w)+":full") },
			Check: func(w *work) error { return checkLayers(dst(w), "full", 3) },
		},
		{
			Label: "skopeo copy oci: oci:",
			Role:  rolePeer,
			Tools: []string{"skopeo"},
			Argv: func(w *work) []string {
				return []string{"skopeo", "copy", "-q", "oci:" + src, "oci:" + dst(w) + ":full"}
			},
			Check: func(w *work) error { return checkLayers(dst(w), "full", 3) },
		},
	}
	wl.Targets = []target{target2("strata copy", "skopeo copy oci: oci:", 10)}
	return wl
}

func gcWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	l := func(w *work) string { return filepath.Join(w.Dir, "l") }
	setup := func(w *work) error { return copyLayout(ds.Many[k], l(w)) }
	check := func(w *work) error { return checkCollected(l(w), ds.Layers[k][2].Digest) }
	wl := &workload{Name: "gc", Kind: k, Needs: []string{"gc"}}
	wl.Sides = []side{
		{Label: "strata gc", Role: roleStrata, Setup: setup, Argv: func(w *work) []string { return e.Strata.gc(l(w)) }, Check: check},
		// umoci hashes every blob again for every image that refers to
		// it: over a minute here, so it runs once.
		{Label: "umoci gc", Role: rolePeer, Tools: []string{"umoci"}, Setup: setup, MaxRuns: 1,
			Argv: func(w *work) []string { return []string{"umoci", "gc", "--layout", l(w)} }, Check: check},
	}
	return wl
}

// checkCollected verifies a gc: the stray blob is gone and every named
// image is whole.
func checkCollected(dir string, stray digest.Digest) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	if l.Blobs().Has(stray, -1) {
		return fmt.Errorf("gc left the unreferenced blob %s", stray)
	}
	for i := 0; i < manyImages; i += 7 {
		if err := checkLayers(dir, fmt.Sprintf("img%02d", i), 2+(1-i%2)); err != nil {
			return err
		}
	}
	return nil
}

func fsckWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	wl := &workload{Name: "fsck", Kind: k, Needs: []string{"fsck"}}
	zstdUnknown := ""
	if k == compression.Zstd {
		zstdUnknown = "n/a (oci-image-tool 1.0.0-rc1 rejects the zstd layer media type)"
	}
	wl.Sides = []side{
		{Label: "strata fsck", Role: roleStrata, Argv: func(w *work) []string { return e.Strata.fsck(ds.Many[k]) }},
		{Label: "oci-image-tool validate", Role: rolePeer, Tools: []string{"oci-image-tool"}, MaxRuns: 1,
			Unavailable: zstdUnknown,
			Argv: func(w *work) []string {
				return []string{"oci-image-tool", "validate", "--type", "image", ds.Many[k]}
			}},
		{Label: "sha256sum blobs (hash only)", Role: roleLimit, Tools: []string{"sha256sum"},
			Argv: func(w *work) []string {
				return sh("cd " + q(filepath.Join(ds.Many[k], "blobs", "sha256")) + " && sha256sum -- * > /dev/null")
			}},
	}
	return wl
}

// quiet runs a setup command, returning its output in the error.
func quiet(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func quietArgv(argv []string) error { return quiet(argv[0], argv[1:]...) }
