package snapshot

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// streamTree lists every entry under root with its type, mode, owner,
// size, mtime, content hash, link target, xattrs and hardlink group.
func streamTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	groups := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		if rel != "." {
			line += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" size=%d sha=%x", st.Size, h.Sum(nil)[:8])
			if st.Nlink > 1 {
				if first, ok := groups[st.Ino]; ok {
					line += " link-of=" + first
				} else {
					groups[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		names, err := fsx.ListXattrs(p)
		if err != nil {
			return err
		}
		sort.Strings(names)
		for _, n := range names {
			buf := make([]byte, 4096)
			sz, err := unix.Lgetxattr(p, n, buf)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %s=%q", n, buf[:sz])
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, got, want string) {
	t.Helper()
	g, w := streamTree(t, got), streamTree(t, want)
	if strings.Join(g, "\n") == strings.Join(w, "\n") {
		return
	}
	for i := 0; i < max(len(g), len(w)); i++ {
		var a, b string
		if i < len(g) {
			a = g[i]
		}
		if i < len(w) {
			b = w[i]
		}
		if a != b {
			t.Errorf("entry %d:\n got  %s\n want %s", i, a, b)
		}
	}
}

// TestStreamedRootfs: a vfs rootfs built from the layer streams is the
// tree a copy of the top snapshot gives, whether no layer, the base, or
// every layer was in the store already.
func TestStreamedRootfs(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "img")
	layers := layertest.Standard(nil)
	must(t, layertest.BuildImage(dir, "v1", layertest.Image{Layers: layers, Cmd: []string{"/bin/sh"}}))
	must(t, layertest.BuildImage(dir, "base", layertest.Image{Layers: layers[:1], Cmd: []string{"/bin/sh"}}))
	l, err := layout.Open(dir)
	must(t, err)
	defer l.Close()
	for _, tc := range []struct {
		name string
		warm []string // images unpacked into the store first
	}{
		{"cold", nil},
		{"warm-base", []string{"base"}},
		{"warm", []string{"v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			for _, ref := range tc.warm {
				_, err := s.Unpack(context.Background(), l, ref, filepath.Join(t.TempDir(), "warm"), UnpackOptions{})
				must(t, err)
			}
			bundle := filepath.Join(t.TempDir(), "b")
			rec, err := s.Unpack(context.Background(), l, "v1", bundle, UnpackOptions{})
			must(t, err)
			top, err := s.Get(rec.Chain[len(rec.Chain)-1].Encoded())
			must(t, err)
			want := filepath.Join(t.TempDir(), "copy")
			must(t, copyTree(context.Background(), top.FS(), want, copyOptions{}))
			sameTree(t, filepath.Join(bundle, RootfsDir), want)
		})
	}
}

// TestStreamFallsBack: a layer Ensure never reads (another process made
// its snapshot) leaves the streamed rootfs behind: the top snapshot is
// copied instead.
func TestStreamFallsBack(t *testing.T) {
	needRoot(t)
	_, l, img := openStandardImage(t)
	s := openStore(t)
	d, err := NewDriver(VFS, s)
	must(t, err)
	bundle := t.TempDir()
	rs := d.StreamRootfs(context.Background(), s, filepath.Join(bundle, RootfsDir), nil, len(img.Manifest.Layers)).(*rootfsStream)
	defer rs.Stop()
	var chain []*Info
	var parent *Info
	for i, ld := range img.Manifest.Layers {
		layer := Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
			return l.Blobs().Open(ld.Digest, ld.Size)
		}}
		streamed := rs.Layer(parent, layer)
		if i == 1 {
			streamed = layer // as if another process had extracted it
		}
		in, err := s.Ensure(context.Background(), d, parent, streamed)
		rs.Settle()
		must(t, err)
		chain = append(chain, in)
		parent = in
	}
	c := &Container{Dir: bundle, Chain: chain}
	must(t, rs.Create(context.Background(), c))
	if !rs.broken {
		t.Error("the stream was not abandoned")
	}
	want := filepath.Join(t.TempDir(), "copy")
	must(t, copyTree(context.Background(), parent.FS(), want, copyOptions{}))
	sameTree(t, c.Rootfs(), want)
}

// TestSnapshotMadeElsewhere: when another process makes a layer's
// snapshot while an unpack is under way, the unpack uses it, and a vfs
// rootfs, no longer built from every layer's stream, is the top
// snapshot's copy.
func TestSnapshotMadeElsewhere(t *testing.T) {
	needRoot(t)
	for _, drv := range []string{VFS, OverlayDriver} {
		t.Run(drv, func(t *testing.T) {
			dir, l, img := openStandardImage(t)
			s := openStore(t)
			other, err := Open(s.Root(), StoreOptions{})
			must(t, err)
			defer other.Close()
			od, err := NewDriver(drv, other)
			must(t, err)
			var base *Info
			bundle := filepath.Join(t.TempDir(), "b")
			o := UnpackOptions{Driver: drv, Layer: func(i, n int, d digest.Digest, missing bool) {
				if i != 1 {
					return
				}
				// The other process makes layer 1's snapshot first, and
				// layer 0's too when it is not in place yet (vfs puts it
				// there once layer 1 is prepared from it: the unpack
				// then takes the other's and drops its own).
				infos, err := other.List()
				must(t, err)
				if want := map[string]int{VFS: 0, OverlayDriver: 1}[drv]; len(infos) != want {
					t.Fatalf("%d snapshots before layer 1, want %d", len(infos), want)
				}
				for i := range 2 {
					ld := img.Manifest.Layers[i]
					in, err := other.Ensure(context.Background(), od, base, Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
						return l.Blobs().Open(ld.Digest, ld.Size)
					}})
					must(t, err)
					if i == 0 {
						base = in
					}
				}
			}}
			rec := unpack(t, s, dir, bundle, o)
			if drv == OverlayDriver {
				t.Cleanup(func() { _ = overlay.Unmount(filepath.Join(bundle, RootfsDir)) })
			}
			if base == nil || len(rec.Chain) != 3 {
				t.Fatalf("record %+v, layer callback ran: %v", rec, base != nil)
			}
			if left, _ := os.ReadDir(filepath.Join(s.Root(), TmpDir)); len(left) != 0 {
				t.Errorf("staging left behind: %v", left)
			}
			if drv == VFS {
				top, err := s.Get(rec.Chain[2].Encoded())
				must(t, err)
				want := filepath.Join(t.TempDir(), "copy")
				must(t, copyTree(context.Background(), top.FS(), want, copyOptions{}))
				sameTree(t, filepath.Join(bundle, RootfsDir), want)
			}
		})
	}
}

// openStandardImage builds the standard three-layer image in a layout
// and opens it as "v1" (the layout closes with the test).
func openStandardImage(t *testing.T) (string, *layout.Layout, *layout.Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	must(t, layertest.BuildImage(dir, "v1", layertest.Image{Layers: layertest.Standard(nil)}))
	l, err := layout.Open(dir)
	must(t, err)
	t.Cleanup(func() { l.Close() })
	img, err := l.Image("v1", nil)
	must(t, err)
	return dir, l, img
}

// TestFileListHandedOn: the file list Ensure hands to the next layer in
// memory gives the same lists on disk as reading each parent's back.
func TestFileListHandedOn(t *testing.T) {
	needRoot(t)
	_, l, img := openStandardImage(t)
	lists := make([][]layer.Files, 2)
	for run, reread := range []bool{false, true} {
		s := openStore(t)
		d, err := NewDriver(VFS, s)
		must(t, err)
		var parent *Info
		for i, ld := range img.Manifest.Layers {
			in, err := s.Ensure(context.Background(), d, parent, Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
				return l.Blobs().Open(ld.Digest, ld.Size)
			}})
			must(t, err)
			if reread {
				in, err = s.Get(in.ID)
				must(t, err)
				if in.files != nil {
					t.Fatal("a snapshot read from the store carries a file list")
				}
			} else if i > 0 && parent.files != nil {
				t.Errorf("layer %d: the parent's list was not handed on", i)
			}
			files, err := in.ReadFiles()
			must(t, err)
			lists[run] = append(lists[run], files)
			parent = in
		}
	}
	if !reflect.DeepEqual(lists[0], lists[1]) {
		t.Error("file lists differ between handed-on and re-read parents")
	}
}
