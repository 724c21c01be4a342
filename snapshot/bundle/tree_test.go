package bundle

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layer/merge"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// TestTree checks that a bundle's tree is its changed rootfs, file for
// file, and that comparing it with its image lists the changes as made
// by the rootfs.
func TestTree(t *testing.T) {
	needRoot(t)
	for _, driver := range []string{vfs.Name, overlay.Name} {
		t.Run(driver, func(t *testing.T) {
			img, _ := buildStandard(t)
			s := openStore(t)
			bundle := filepath.Join(t.TempDir(), "b")
			unpack(t, s, img, bundle, UnpackOptions{Driver: driver})
			rootfs := filepath.Join(bundle, snapshot.RootfsDir)
			if driver == overlay.Name {
				t.Cleanup(func() { _ = overlay.Unmount(rootfs) })
			}
			changeRootfs(t, rootfs)
			ctx := context.Background()
			tree, err := Tree(ctx, bundle, snapshot.StoreOptions{})
			must(t, err)
			var buf bytes.Buffer
			must(t, tree.WriteTar(ctx, &buf, merge.WriteOptions{}))
			got := t.TempDir()
			must(t, layer.Apply(ctx, got, &buf, layer.ApplyOptions{}, layer.Files{}))
			diffTrees(t, "rootfs", withoutLinkCounts(describeTree(t, rootfs)), "tree", withoutLinkCounts(describeTree(t, got)))

			l, err := layout.Open(img)
			must(t, err)
			defer l.Close()
			image, err := l.Image("v1", nil)
			must(t, err)
			base, err := merge.Read(ctx, imageLayers(l, image), merge.Options{})
			must(t, err)
			cs, err := merge.Compare(ctx, base, tree)
			must(t, err)
			byPath := map[string]merge.Change{}
			for _, c := range cs {
				byPath[c.Path] = c
			}
			rootfsLayer := len(image.Manifest.Layers)
			want := map[string]string{
				"etc/added": "A", "etc/passwd": "C size,content", "etc/group": "D", "home/alice": "D",
				"usr/bin/sgid": "C mode", "app": "C owner", "opq": "C type", "usr/lib/libc.so": "C xattrs",
				"newdir/sub/f": "A", "lib": "C link", "dev/zero": "A", "new-fifo": "A",
				"etc/motd": "C size,content",
			}
			if driver == vfs.Name {
				// Written in place: both names of the file changed (an
				// overlay copy-up parts them).
				want["app-link"] = "C size,content"
			}
			for p, want := range want {
				c, ok := byPath[p]
				if !ok {
					t.Errorf("%s: no change", p)
					continue
				}
				s := c.Kind.String()
				if len(c.Fields) > 0 {
					s += " " + strings.Join(c.Fields, ",")
				}
				if s != want || c.Layer != rootfsLayer {
					t.Errorf("%s: %s by layer %d, want %s by %d", p, s, c.Layer, want, rootfsLayer)
				}
			}
			if n := tree.Layers()[rootfsLayer].Name; n != filepath.Join(bundle, "rootfs") {
				t.Errorf("the rootfs layer is named %q", n)
			}
		})
	}
}

func imageLayers(l *layout.Layout, img *layout.Image) []merge.Layer {
	var out []merge.Layer
	for i, ld := range img.Manifest.Layers {
		out = append(out, merge.Layer{DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) { return l.Blobs().Open(ld.Digest, ld.Size) }})
	}
	return out
}
