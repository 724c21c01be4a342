package vfs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

var (
	needRoot     = layertest.NeedRoot
	lstat        = layertest.Lstat
	must         = layertest.Must
	describeTree = layertest.DescribeTree
	diffTrees    = layertest.DiffTrees
)

// copySource makes a small tree with what copyTree must carry over: a
// sparse file, special modes, a hardlink pair, a symlink, an xattr and
// set times.
func copySource(t *testing.T, dir string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "d/e"), 0o755))
	f, err := os.Create(filepath.Join(dir, "d/sparse"))
	must(t, err)
	must(t, f.Truncate(32<<20))
	for _, off := range []int64{0, 9 << 20, 32<<20 - 6} {
		_, err := f.WriteAt([]byte("strata"), off)
		must(t, err)
	}
	must(t, f.Close())
	must(t, os.WriteFile(filepath.Join(dir, "d/plain"), bytes.Repeat([]byte("x"), 100000), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "d/e/suid"), []byte("#!/bin/sh\n"), 0o755))
	must(t, unix.Chmod(filepath.Join(dir, "d/e/suid"), 0o4755))
	must(t, os.WriteFile(filepath.Join(dir, "d/secret"), []byte("s"), 0o600))
	must(t, unix.Chmod(filepath.Join(dir, "d/secret"), 0o400))
	must(t, os.Link(filepath.Join(dir, "d/plain"), filepath.Join(dir, "d/e/hard")))
	must(t, os.Symlink("../plain", filepath.Join(dir, "d/e/sym")))
	must(t, unix.Lsetxattr(filepath.Join(dir, "d/plain"), "user.strata", []byte("v"), 0))
	old := time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC)
	for _, p := range []string{"d/sparse", "d/plain", "d/e/suid", "d/secret", "d/e", "d"} {
		must(t, os.Chtimes(filepath.Join(dir, p), old, old))
	}
}

// TestCopyTree: a copy keeps holes, bytes, modes (set-id bits too),
// hardlinks, symlinks, xattrs and times, in both the root and the
// rootless form.
func TestCopyTree(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    copyOptions
	}{
		{"plain", copyOptions{}},
		{"rootless", copyOptions{rootless: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			copySource(t, src)
			dst := filepath.Join(t.TempDir(), "copy")
			must(t, copyTree(context.Background(), src, dst, tc.o))

			dp := filepath.Join(dst, "d/sparse")
			if st := lstat(t, dp); st.Size != 32<<20 || st.Blocks*512 > 256<<10 {
				t.Errorf("sparse copy: size %d, %d blocks allocated", st.Size, st.Blocks)
			}
			for _, p := range []string{"d/sparse", "d/plain", "d/e/suid", "d/secret"} {
				a, err := os.ReadFile(filepath.Join(src, p))
				must(t, err)
				b, err := os.ReadFile(filepath.Join(dst, p))
				must(t, err)
				if !bytes.Equal(a, b) {
					t.Errorf("%s: content differs", p)
				}
			}
			for _, p := range []string{"d", "d/e", "d/sparse", "d/plain", "d/e/suid", "d/secret", "d/e/sym"} {
				a, b := lstat(t, filepath.Join(src, p)), lstat(t, filepath.Join(dst, p))
				if a.Mode != b.Mode {
					t.Errorf("%s: mode %o, want %o", p, b.Mode, a.Mode)
				}
				if a.Mtim != b.Mtim {
					t.Errorf("%s: mtime %v, want %v", p, b.Mtim, a.Mtim)
				}
				if !tc.o.rootless && (a.Uid != b.Uid || a.Gid != b.Gid) {
					t.Errorf("%s: owner %d:%d, want %d:%d", p, b.Uid, b.Gid, a.Uid, a.Gid)
				}
			}
			if a, b := lstat(t, filepath.Join(dst, "d/plain")), lstat(t, filepath.Join(dst, "d/e/hard")); a.Ino != b.Ino {
				t.Error("d/e/hard is not a hardlink of d/plain in the copy")
			}
			if got, err := os.Readlink(filepath.Join(dst, "d/e/sym")); err != nil || got != "../plain" {
				t.Errorf("symlink: %q, %v", got, err)
			}
			buf := make([]byte, 16)
			if n, err := unix.Lgetxattr(filepath.Join(dst, "d/plain"), "user.strata", buf); err != nil || string(buf[:n]) != "v" {
				t.Errorf("xattr: %q, %v", buf[:n], err)
			}
		})
	}
}

// TestCopyTreeOwners: copies made as root give files the source's owners
// (chown skipped only when the new file already has them), shifted by an
// id map when there is one.
func TestCopyTreeOwners(t *testing.T) {
	needRoot(t)
	src := t.TempDir()
	for i, id := range []int{0, 1000, 65534} {
		p := filepath.Join(src, "f"+string(rune('a'+i)))
		must(t, os.WriteFile(p, []byte("x"), 0o4755))
		must(t, os.Chown(p, id, id+1))
		must(t, unix.Chmod(p, 0o4755))
	}
	for _, tc := range []struct {
		name  string
		idMap *ids.Map
		shift int
	}{
		{"identity", nil, 0},
		{"mapped", &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 70000}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 70000}}}, 100000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "copy")
			must(t, copyTree(context.Background(), src, dst, copyOptions{idMap: tc.idMap}))
			for i, id := range []int{0, 1000, 65534} {
				st := lstat(t, filepath.Join(dst, "f"+string(rune('a'+i))))
				if int(st.Uid) != id+tc.shift || int(st.Gid) != id+1+tc.shift {
					t.Errorf("f%c: owner %d:%d, want %d:%d", 'a'+i, st.Uid, st.Gid, id+tc.shift, id+1+tc.shift)
				}
				if st.Mode&0o7777 != 0o4755 {
					t.Errorf("f%c: mode %o after chown, want 4755", 'a'+i, st.Mode&0o7777)
				}
			}
		})
	}
}
