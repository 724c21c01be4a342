package snapshot_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// benchLayer is a layer shaped like a slice of a rootfs: 2,000 files of
// 1-32 KiB in 40 directories, 100 symlinks and 100 hard links (about
// 32 MiB). Half of each file is compressible.
func benchLayer() []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	var es []layertest.Entry
	for d := 0; d < 40; d++ {
		es = append(es, layertest.Dir(fmt.Sprintf("usr/lib/d%02d/", d), 0o755))
	}
	body := make([]byte, 32<<10)
	for i := 0; i < 2000; i++ {
		n := 1<<10 + rng.IntN(31<<10)
		for j := 0; j < n; j++ {
			if j < n/2 {
				body[j] = byte(rng.Uint32())
			} else {
				body[j] = "abcdefgh"[j%8]
			}
		}
		es = append(es, layertest.File(fmt.Sprintf("usr/lib/d%02d/f%04d", i%40, i), string(body[:n]), 0o644))
	}
	for i := 0; i < 100; i++ {
		es = append(es,
			layertest.Symlink(fmt.Sprintf("usr/lib/d%02d/s%03d", i%40, i), fmt.Sprintf("f%04d", i)),
			layertest.Hardlink(fmt.Sprintf("usr/lib/d%02d/h%03d", i%40, i), fmt.Sprintf("usr/lib/d%02d/f%04d", i%40, i)))
	}
	return layertest.Tar(es...)
}

func benchApplyOptions() layer.ApplyOptions {
	// Without root, owners go to the rootless xattr as an unprivileged
	// unpack does.
	return layer.ApplyOptions{Rootless: os.Geteuid() != 0}
}

// BenchmarkApply extracts one layer into an empty directory: the work of
// unpack per layer once the stream is decompressed.
func BenchmarkApply(b *testing.B) {
	tarball := benchLayer()
	root := b.TempDir()
	b.SetBytes(int64(len(tarball)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dir := filepath.Join(root, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := layer.Apply(context.Background(), dir, bytes.NewReader(tarball), benchApplyOptions(), layer.Files{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := fsx.RemoveAll(dir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkUnpack is a cold vfs unpack of a one-layer image (verified
// read, gunzip, apply, file list, rootfs copy, bundle) into a store of
// its own.
func BenchmarkUnpack(b *testing.B) {
	needRootBench(b)
	tarball := benchLayer()
	lay := filepath.Join(b.TempDir(), "layout")
	if err := layertest.BuildImage(lay, "bench", layertest.Image{Layers: [][]byte{tarball}, Cmd: []string{"/bin/sh"}}); err != nil {
		b.Fatal(err)
	}
	l, err := layout.Open(lay)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	root := b.TempDir()
	b.SetBytes(int64(len(tarball)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := snapshot.Open(filepath.Join(root, fmt.Sprint(i), "store"), snapshot.StoreOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Unpack(context.Background(), l, "bench", filepath.Join(root, fmt.Sprint(i), "bundle"), snapshot.UnpackOptions{Driver: snapshot.VFS}); err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkCommit diffs a vfs rootfs against the snapshot it came from
// and stores the change as a gzip layer: one changed file among 2,000,
// and 200 changed files.
func BenchmarkCommit(b *testing.B) {
	needRootBench(b)
	tarball := benchLayer()
	for _, changed := range []int{1, 200} {
		b.Run(fmt.Sprintf("%dfiles", changed), func(b *testing.B) {
			root := b.TempDir()
			lay := filepath.Join(root, "layout")
			if err := layertest.BuildImage(lay, "bench", layertest.Image{Layers: [][]byte{tarball}, Cmd: []string{"/bin/sh"}}); err != nil {
				b.Fatal(err)
			}
			l, err := layout.Open(lay)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			s, err := snapshot.Open(filepath.Join(root, "store"), snapshot.StoreOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				bundle := filepath.Join(root, fmt.Sprint("bundle", i))
				if _, err := s.Unpack(context.Background(), l, "bench", bundle, snapshot.UnpackOptions{Driver: snapshot.VFS}); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < changed; j++ {
					p := filepath.Join(bundle, "rootfs", fmt.Sprintf("usr/lib/d%02d/f%04d", j%40, j))
					if err := os.WriteFile(p, []byte(fmt.Sprintf("changed %d %d\n", i, j)), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				res, err := snapshot.Commit(context.Background(), bundle, l, snapshot.CommitOptions{Ref: fmt.Sprint("c", i)})
				if err != nil {
					b.Fatal(err)
				}
				if res.Layer == nil {
					b.Fatal("commit found no change")
				}
			}
		})
	}
}

// needRootBench fails the benchmark unless it runs as root: unpack and
// commit keep the image's owners.
func needRootBench(b *testing.B) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Fatal("this benchmark must run as root")
	}
}
