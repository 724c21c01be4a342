package bundle_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// BenchmarkUnpack is a cold vfs unpack of a one-layer image (verified
// read, gunzip, apply, file list, rootfs copy, bundle) into a store of
// its own.
func BenchmarkUnpack(b *testing.B) {
	needRootBench(b)
	tarball := layertest.BenchLayer()
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
		if _, err := bundle.Unpack(context.Background(), s, l, "bench", filepath.Join(root, fmt.Sprint(i), "bundle"), bundle.UnpackOptions{Driver: vfs.Name}); err != nil {
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
	tarball := layertest.BenchLayer()
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
				dir := filepath.Join(root, fmt.Sprint("bundle", i))
				if _, err := bundle.Unpack(context.Background(), s, l, "bench", dir, bundle.UnpackOptions{Driver: vfs.Name}); err != nil {
					b.Fatal(err)
				}
				for j := 0; j < changed; j++ {
					p := filepath.Join(dir, "rootfs", fmt.Sprintf("usr/lib/d%02d/f%04d", j%40, j))
					if err := os.WriteFile(p, []byte(fmt.Sprintf("changed %d %d\n", i, j)), 0o644); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				res, err := bundle.Commit(context.Background(), dir, l, bundle.CommitOptions{Ref: fmt.Sprint("c", i)})
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

// needRootBench skips the benchmark (or fails it under the switch)
// unless it runs as root: unpack and commit keep the image's owners.
func needRootBench(b *testing.B) {
	b.Helper()
	testenv.RequireRoot(b)
}
