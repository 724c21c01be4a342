package layer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

func benchApplyOptions() layer.ApplyOptions {
	// Without root, owners go to the rootless xattr as an unprivileged
	// unpack does.
	return layer.ApplyOptions{Rootless: os.Geteuid() != 0}
}

// BenchmarkApply extracts one layer into an empty directory: the work of
// unpack per layer once the stream is decompressed.
func BenchmarkApply(b *testing.B) {
	tarball := layertest.BenchLayer()
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
