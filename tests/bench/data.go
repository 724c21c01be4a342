package main

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/debmirror"
	"github.com/strata-oci/strata/layout"
)

// dataVersion changes whenever the generated data changes shape, so a
// cache made by an older suite is rebuilt (the debootstrap tree is kept).
const dataVersion = 1

// manyImages is the number of images in the layout gc and fsck work on.
const manyImages = 50

// dataset is the benchmark's input data, made once and cached.
type dataset struct {
	Version int `json:"version"`
	// Uncompressed layer tarballs: the debootstrap rootfs, the Go
	// toolchain tree, and the small changes layer.
	BaseTar    string `json:"baseTar"`
	GoTar      string `json:"goTar"`
	ChangesTar string `json:"changesTar"`
	// Files and directories the three layers hold, for checks.
	Plan changesPlan `json:"plan"`
	// Layouts by compression: "full" (three layers) and "base" (one) in
	// Layouts; manyImages images plus garbage in Many.
	Layouts map[compression.Kind]string `json:"layouts"`
	Many    map[compression.Kind]string `json:"many"`
	// Layer descriptors of "full" by compression.
	Layers map[compression.Kind][]ocispec.Descriptor `json:"layers"`
	// Summary for the report header.
	BaseFiles, GoFiles int
	BaseBytes, GoBytes int64
}

// kinds are the layer compressions every workload runs with.
var kinds = []compression.Kind{compression.Gzip, compression.Zstd}

// defaultDataDir is where the data is cached between runs.
func defaultDataDir() string {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
		return filepath.Join(x, "strata-bench")
	}
	if os.Geteuid() == 0 {
		return "/var/cache/strata-bench"
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "strata-bench")
	}
	return filepath.Join(os.TempDir(), "strata-bench")
}

// prepareData makes (or reuses) everything the workloads read.
func prepareData(dir, goroot string, logf func(string, ...any)) (*dataset, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	meta := filepath.Join(dir, "data.json")
	if b, err := os.ReadFile(meta); err == nil {
		var ds dataset
		if json.Unmarshal(b, &ds) == nil && ds.Version == dataVersion && ds.complete() {
			logf("data: reusing %s", dir)
			return &ds, nil
		}
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := debootstrap(dir, rootfs, logf); err != nil {
		return nil, err
	}
	ds := &dataset{
		Version:    dataVersion,
		BaseTar:    filepath.Join(dir, "base.tar"),
		GoTar:      filepath.Join(dir, "go.tar"),
		ChangesTar: filepath.Join(dir, "changes.tar"),
		Layouts:    map[compression.Kind]string{},
		Many:       map[compression.Kind]string{},
		Layers:     map[compression.Kind][]ocispec.Descriptor{},
	}
	plan, err := planChanges(rootfs, goroot)
	if err != nil {
		return nil, err
	}
	ds.Plan = plan
	logf("data: writing layer tarballs")
	if ds.BaseFiles, ds.BaseBytes, err = makeTar(ds.BaseTar, func(tw *tar.Writer) error { return writeTreeTar(tw, rootfs, "") }); err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	if ds.GoFiles, ds.GoBytes, err = makeTar(ds.GoTar, func(tw *tar.Writer) error { return writeTreeTar(tw, goroot, "usr/local/go") }); err != nil {
		return nil, fmt.Errorf("toolchain layer from %s: %w", goroot, err)
	}
	if _, _, err = makeTar(ds.ChangesTar, func(tw *tar.Writer) error { return writeChangesTar(tw, plan) }); err != nil {
		return nil, fmt.Errorf("changes layer: %w", err)
	}
	for _, k := range kinds {
		logf("data: building %s layouts", k)
		ldir := filepath.Join(dir, "layout-"+string(k))
		layers, err := buildLayout(ldir, k, []string{ds.BaseTar, ds.GoTar, ds.ChangesTar})
		if err != nil {
			return nil, err
		}
		ds.Layouts[k], ds.Layers[k] = ldir, layers
		mdir := filepath.Join(dir, fmt.Sprintf("many-%s", k))
		if err := buildMany(mdir, ldir, k, layers); err != nil {
			return nil, err
		}
		ds.Many[k] = mdir
	}
	b, err := json.MarshalIndent(ds, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(meta, b, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", meta, err)
	}
	return ds, nil
}

// complete says whether every file the dataset names is still there.
func (ds *dataset) complete() bool {
	paths := []string{ds.BaseTar, ds.GoTar, ds.ChangesTar}
	for _, k := range kinds {
		if ds.Layouts[k] == "" || ds.Many[k] == "" || len(ds.Layers[k]) != 3 {
			return false
		}
		paths = append(paths, filepath.Join(ds.Layouts[k], "index.json"), filepath.Join(ds.Many[k], "index.json"))
		for _, l := range ds.Layers[k] {
			paths = append(paths, ds.blobPath(k, l.Digest))
		}
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func (ds *dataset) blobPath(k compression.Kind, d digest.Digest) string {
	return filepath.Join(ds.Layouts[k], "blobs", d.Algorithm().String(), d.Encoded())
}

// debootstrap makes a Debian minbase tree of this machine's release from
// the mirror apt uses. A tree from an interrupted run is thrown away.
func debootstrap(dir, rootfs string, logf func(string, ...any)) error {
	done := rootfs + ".done"
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("making the Debian base layer needs root (debootstrap); run the benchmark as root once to fill the cache")
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return errors.New("debootstrap is not installed (apt-get install debootstrap)")
	}
	suite := debmirror.HostSuite()
	mirror, err := debmirror.Mirror(suite)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(rootfs); err != nil {
		return fmt.Errorf("remove partial %s: %w", rootfs, err)
	}
	logf("data: debootstrap --variant=minbase %s from %s (a few minutes, once)", suite, mirror)
	logPath := filepath.Join(dir, "debootstrap.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer lf.Close()
	cmd := exec.Command("debootstrap", "--variant=minbase", suite, rootfs, mirror)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debootstrap %s into %s: %w (see %s)", suite, rootfs, err, logPath)
	}
	// Caches that would make the layer depend on the day it was made.
	for _, p := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		ents, _ := os.ReadDir(filepath.Join(rootfs, p))
		for _, e := range ents {
			if e.Type().IsRegular() && e.Name() != "lock" {
				os.Remove(filepath.Join(rootfs, p, e.Name()))
			}
		}
	}
	return os.WriteFile(done, nil, 0o644)
}

// makeTar writes an uncompressed tarball through a temporary file and
// returns the number of entries and bytes of file content in it.
func makeTar(dst string, fill func(*tar.Writer) error) (int, int64, error) {
	tmp := dst + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(tmp)
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	if err := fill(tw); err != nil {
		return 0, 0, err
	}
	if err := tw.Close(); err != nil {
		return 0, 0, err
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, err
	}
	if err := f.Close(); err != nil {
		return 0, 0, err
	}
	n, size, err := countTar(tmp)
	if err != nil {
		return 0, 0, err
	}
	return n, size, os.Rename(tmp, dst)
}

// countTar reads a tarball back: this both counts it and proves that what
// was written parses.
func countTar(p string) (int, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	n, size := 0, int64(0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, size, nil
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read back %s: %w", p, err)
		}
		n++
		size += h.Size
	}
}

// putLayer compresses the tarball at src with k into l, hashing the
// uncompressed stream for the diff ID on the way.
func putLayer(l *layout.Layout, src string, k compression.Kind) (ocispec.Descriptor, digest.Digest, error) {
	f, err := os.Open(src)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer f.Close()
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	w, err := l.Blobs().NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer w.Close()
	bw := bufio.NewWriterSize(w, 1<<20)
	zw, err := compression.NewWriter(bw, k, compression.DefaultLevel)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(zw, h), bufio.NewReaderSize(f, 1<<20)); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("compress %s: %w", src, err)
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("compress %s: %w", src, err)
	}
	if err := bw.Flush(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d, size, err := w.Commit()
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	mt := ocispec.MediaTypeImageLayerGzip
	if k == compression.Zstd {
		mt = ocispec.MediaTypeImageLayerZstd
	}
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}, digest.NewDigest(digest.SHA256, h), nil
}

func benchPlatform() ocispec.Platform {
	return ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// putImage stores an image of layers and names it.
func putImage(l *layout.Layout, layers []ocispec.Descriptor, diffIDs []digest.Digest, names ...string) error {
	cfg := layout.NewConfig(benchPlatform())
	for i, d := range diffIDs {
		if err := cfg.AppendLayer(d); err != nil {
			return err
		}
		if err := cfg.AppendHistory(ocispec.History{CreatedBy: fmt.Sprintf("strata-bench layer %d", i)}); err != nil {
			return err
		}
	}
	if err := cfg.SetRuntime("Cmd", []string{"/bin/sh"}); err != nil {
		return err
	}
	if err := cfg.SetRuntime("Env", []string{"PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}); err != nil {
		return err
	}
	desc, err := l.PutImage(cfg, layers, nil)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return l.AddUntagged(desc)
	}
	return l.Tag(desc, names...)
}

// buildLayout makes the layout with images "base" (the rootfs layer) and
// "full" (all three layers), compressed with k.
func buildLayout(dir string, k compression.Kind, tars []string) ([]ocispec.Descriptor, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	l, err := layout.Init(dir)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, t := range tars {
		desc, diffID, err := putLayer(l, t, k)
		if err != nil {
			return nil, fmt.Errorf("layout %s: %w", dir, err)
		}
		layers, diffIDs = append(layers, desc), append(diffIDs, diffID)
	}
	if err := putImage(l, layers[:1], diffIDs[:1], "base"); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	if err := putImage(l, layers, diffIDs, "full"); err != nil {
		return nil, fmt.Errorf("layout %s: %w", dir, err)
	}
	return layers, nil
}

// buildMany makes the layout gc and fsck run on: manyImages tagged images
// sharing the base layer (half of them the toolchain layer too), each with
// a unique one-file top layer, plus garbage for gc: images written and
// then untagged, and a stray layer blob.
func buildMany(dir, from string, k compression.Kind, full []ocispec.Descriptor) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	src, err := layout.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Hold(); err != nil {
		return err
	}
	for _, d := range full[:2] {
		if _, err := l.Blobs().CopyFrom(context.Background(), src.Blobs(), d.Digest, d.Size); err != nil {
			return fmt.Errorf("layout %s: %w", dir, err)
		}
	}
	diffIDs, err := layerDiffIDs(src, "full")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".tiny-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	garbage := manyImages / 5
	for i := 0; i < manyImages+garbage; i++ {
		tiny := filepath.Join(tmp, fmt.Sprintf("%d.tar", i))
		if _, _, err := makeTar(tiny, func(tw *tar.Writer) error { return writeTinyTar(tw, i) }); err != nil {
			return err
		}
		top, topID, err := putLayer(l, tiny, k)
		if err != nil {
			return err
		}
		layers := []ocispec.Descriptor{full[0]}
		ids := []digest.Digest{diffIDs[0]}
		if i%2 == 0 {
			layers, ids = append(layers, full[1]), append(ids, diffIDs[1])
		}
		layers, ids = append(layers, top), append(ids, topID)
		if i < manyImages {
			if err := putImage(l, layers, ids, fmt.Sprintf("img%02d", i)); err != nil {
				return err
			}
			continue
		}
		// Garbage: the image's blobs are written but nothing names it.
		cfg := layout.NewConfig(benchPlatform())
		for _, id := range ids {
			_ = cfg.AppendLayer(id)
		}
		if _, err := l.PutImage(cfg, layers, nil); err != nil {
			return err
		}
	}
	// A stray layer-sized blob nothing references.
	if _, err := l.Blobs().CopyFrom(context.Background(), src.Blobs(), full[2].Digest, full[2].Size); err != nil {
		return err
	}
	return nil
}

func layerDiffIDs(l *layout.Layout, ref string) ([]digest.Digest, error) {
	img, err := l.Image(ref, nil)
	if err != nil {
		return nil, err
	}
	return img.Config.RootFS.DiffIDs, nil
}

// copyLayout copies a layout for a workload that changes it: blobs are
// hard links (every tool replaces or removes blobs, never rewrites them),
// everything else is copied.
func copyLayout(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		case strings.HasPrefix(rel, "blobs"+string(filepath.Separator)):
			return os.Link(p, to)
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, b, 0o644)
		}
		return nil
	})
}

// warm reads the data every workload reads, so that the first run of the
// first side does not pay for the disk alone.
func (ds *dataset) warm() error {
	roots := []string{ds.BaseTar, ds.GoTar, ds.ChangesTar}
	for _, k := range kinds {
		roots = append(roots, ds.Layouts[k], ds.Many[k])
	}
	buf := make([]byte, 1<<20)
	for _, r := range roots {
		err := filepath.WalkDir(r, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyBuffer(io.Discard, f, buf)
			return err
		})
		if err != nil {
			return fmt.Errorf("warm the page cache: %w", err)
		}
	}
	return nil
}
