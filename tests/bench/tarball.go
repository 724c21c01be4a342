package main

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writeTreeTar writes the directory tree at root into tw as a layer:
// entry names are prefix plus the path relative to root, in lexical
// order, with numeric owners, hard links as link entries, device nodes,
// and extended attributes. Sockets are skipped: no layer format carries
// them.
func writeTreeTar(tw *tar.Writer, root, prefix string) error {
	seen := map[inode]string{}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := path.Join(prefix, filepath.ToSlash(rel))
		if rel == "." {
			if prefix == "" {
				return nil
			}
			name = prefix
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		hdr, err := treeTarHeader(p, name, fi, seen)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if hdr.Typeflag != tar.TypeReg || hdr.Size == 0 {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	})
}

// inode identifies a file across its hard links.
type inode struct{ dev, ino uint64 }

// treeTarHeader is the header of the file at p, fi, named name in the
// layer: a link entry to the name seen holds for its inode, when it has
// one.
func treeTarHeader(p, name string, fi fs.FileInfo, seen map[inode]string) (*tar.Header, error) {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(p); err != nil {
			return nil, err
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	hdr.Name = name
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	hdr.ModTime = hdr.ModTime.Truncate(time.Second)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		if fi.Mode().IsRegular() && st.Nlink > 1 {
			k := inode{uint64(st.Dev), st.Ino}
			if first, ok := seen[k]; ok {
				hdr.Typeflag = tar.TypeLink
				hdr.Linkname = first
				hdr.Size = 0
			} else {
				seen[k] = name
			}
		}
	}
	xa, err := readXattrs(p)
	if err != nil {
		return nil, err
	}
	if len(xa) > 0 {
		hdr.PAXRecords = map[string]string{}
		for k, v := range xa {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	return hdr, nil
}

// readXattrs returns the extended attributes of p (not following a
// symbolic link). A filesystem without xattr support has none.
func readXattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if err == unix.ENOTSUP || sz == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
	}
	out := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if k == "" {
			continue
		}
		vs, err := unix.Lgetxattr(p, k, nil)
		if err != nil {
			continue
		}
		v := make([]byte, vs)
		vs, err = unix.Lgetxattr(p, k, v)
		if err != nil {
			continue
		}
		out[k] = string(v[:vs])
	}
	return out, nil
}

// changesPlan says what the third, small layer does to the two below it.
type changesPlan struct {
	// Deleted are paths of the base layer whited out one by one.
	Deleted []string
	// DeletedDir is a base-layer directory whited out as a whole.
	DeletedDir string
	// Opaque is a directory of the toolchain layer made opaque; the layer
	// puts one new file in it.
	Opaque string
	// Modified is a base-layer file the layer replaces.
	Modified string
}

// planChanges picks the paths the changes layer touches from the base
// rootfs and the toolchain tree on this machine, so the plan always names
// things that exist below.
func planChanges(rootfs, goroot string) (changesPlan, error) {
	var p changesPlan
	docs, err := os.ReadDir(filepath.Join(rootfs, "usr/share/doc"))
	if err != nil {
		return p, fmt.Errorf("plan changes layer: %w", err)
	}
	var dirs []string
	for _, d := range docs {
		if d.IsDir() {
			dirs = append(dirs, d.Name())
		}
	}
	if len(dirs) < 2 {
		return p, fmt.Errorf("plan changes layer: %s has too few package directories", filepath.Join(rootfs, "usr/share/doc"))
	}
	sort.Strings(dirs)
	p.DeletedDir = "usr/share/doc/" + dirs[0]
	// Up to 50 single files from the other package documentation.
	for _, d := range dirs[1:] {
		ents, err := os.ReadDir(filepath.Join(rootfs, "usr/share/doc", d))
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".wh.") {
				p.Deleted = append(p.Deleted, "usr/share/doc/"+d+"/"+e.Name())
				break
			}
		}
		if len(p.Deleted) == 50 {
			break
		}
	}
	if fi, err := os.Stat(filepath.Join(goroot, "test")); err == nil && fi.IsDir() {
		p.Opaque = "usr/local/go/test"
	} else {
		p.Opaque = "usr/local/go/src"
	}
	p.Modified = "etc/hostname"
	if _, err := os.Lstat(filepath.Join(rootfs, p.Modified)); err != nil {
		p.Modified = "etc/debian_version"
	}
	return p, nil
}

// writeChangesTar writes the small third layer: single-file whiteouts, a
// whole-directory whiteout, an opaque directory with a new file, a
// modified file, and a new file with several hard links to it.
func writeChangesTar(tw *tar.Writer, plan changesPlan) error {
	mt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dirs := map[string]bool{}
	dir := func(name string) error {
		var parents []string
		for d := path.Dir(name); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}); err != nil {
				return err
			}
		}
		return nil
	}
	file := func(name string, data []byte) error {
		if err := dir(name); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: mt, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	whiteout := func(name string) error {
		return file(path.Join(path.Dir(name), ".wh."+path.Base(name)), nil)
	}
	var names []string
	names = append(names, plan.Deleted...)
	names = append(names, plan.DeletedDir)
	sort.Strings(names)
	for _, n := range names {
		if err := whiteout(n); err != nil {
			return fmt.Errorf("whiteout %s: %w", n, err)
		}
	}
	if err := file(path.Join(plan.Opaque, ".wh..wh..opq"), nil); err != nil {
		return fmt.Errorf("opaque %s: %w", plan.Opaque, err)
	}
	if err := file(path.Join(plan.Opaque, "README.strata-bench"), []byte("this directory was made opaque by the benchmark's third layer\n")); err != nil {
		return err
	}
	if err := file(plan.Modified, []byte("strata-bench\n")); err != nil {
		return err
	}
	// 4 MiB of incompressible data, hard-linked under ten more names.
	data := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{'s', 't', 'r', 'a', 't', 'a'})
	_, _ = rng.Read(data)
	const target = "opt/bench/data.bin"
	if err := file(target, data); err != nil {
		return err
	}
	for i := 0; i < 10; i++ {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeLink, Name: fmt.Sprintf("opt/bench/link%02d.bin", i), Linkname: target, Mode: 0o644, ModTime: mt, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	return nil
}

// writeTinyTar writes a one-file layer that differs for every n: the
// unique top layer of each image in the many-images layout.
func writeTinyTar(tw *tar.Writer, n int) error {
	mt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte(fmt.Sprintf("image %d of the strata benchmark\n", n))
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: mt, Format: tar.FormatPAX}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/bench-image", Mode: 0o644, Size: int64(len(body)), ModTime: mt, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}
