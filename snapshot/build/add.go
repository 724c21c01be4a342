package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// fetch downloads an ADD URL into tmp, checking --checksum.
func (b *builder) fetch(ctx context.Context, u, checksum, tmp string) (*item, error) {
	var want digest.Digest
	if checksum != "" {
		want = digest.Digest(checksum)
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("--checksum %s: %w", checksum, err)
		}
	}
	pu, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ADD %s: %s", u, resp.Status)
	}
	name := path.Base(pu.Path)
	if name == "/" || name == "." || name == "" {
		name = "__unnamed__"
	}
	p := filepath.Join(tmp, "download")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	var dg digest.Digester = digest.SHA256.Digester()
	if want != "" {
		dg = want.Algorithm().Digester()
	}
	_, err = io.Copy(io.MultiWriter(f, dg.Hash()), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", u, err)
	}
	if want != "" && dg.Digest() != want {
		return nil, fmt.Errorf("ADD %s: checksum mismatch: got %s, want %s", u, dg.Digest(), want)
	}
	var mtime time.Time
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			mtime = t
		}
	}
	return &item{name: name, download: p, mtime: mtime}, nil
}

// isArchive says whether the source file rel is a tar archive, plain or
// compressed, as ADD extracts.
func isArchive(t *fsx.Tree, rel string) bool {
	f, err := t.OpenRegular(rel)
	if err != nil {
		return false
	}
	defer f.Close()
	k, r, err := compression.Sniff(bufio.NewReader(f))
	if err != nil {
		return false
	}
	rc, err := compression.NewReader(r, k)
	if err != nil {
		return false
	}
	defer rc.Close()
	buf := make([]byte, 512)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return false
	}
	_, err = tar.NewReader(bytes.NewReader(buf)).Next()
	return err == nil || errors.Is(err, io.ErrUnexpectedEOF)
}

// extract unpacks an ADD archive into destRel, owners and modes as the
// archive has them, every name confined to destRel as Docker's chrooted
// extraction confines them.
func (c *copier) extract(it *item, destRel string) error {
	f, err := c.src.t.OpenRegular(it.rel)
	if err != nil {
		return err
	}
	defer f.Close()
	k, r, err := compression.Sniff(bufio.NewReader(f))
	if err != nil {
		return err
	}
	rc, err := compression.NewReader(r, k)
	if err != nil {
		return err
	}
	defer rc.Close()
	dfd, err := c.t.Dir(destRel)
	if err != nil {
		return err
	}
	dt, err := fsx.OpenTree(fsx.FdPath(dfd))
	unix.Close(dfd)
	if err != nil {
		return err
	}
	defer dt.Close()
	tr := tar.NewReader(rc)
	var dirs []*tar.Header
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", it.name, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue
		}
		if err := c.parentsIn(dt, parentOf(name)); err != nil {
			return err
		}
		n := tarNode(hdr, tr)
		if n == nil {
			continue
		}
		if n.typ == unix.S_IFDIR {
			dirs = append(dirs, hdr)
		}
		if err := c.w.put(dt, name, n); err != nil {
			return err
		}
	}
	// Directories get their times once their contents are written.
	dirTimes(dt, dirs)
	return nil
}

// parentsIn makes missing directories of an archive entry, root's, 0755.
func (c *copier) parentsIn(t *fsx.Tree, dir string) error {
	if dir == "" {
		return nil
	}
	var made []string
	fd, err := t.MkdirAll(dir, func(p string) { made = append(made, p) })
	if err != nil {
		return err
	}
	unix.Close(fd)
	for _, p := range made {
		if err := c.w.fixDir(t, p, 0o755, 0, 0, &c.now); err != nil {
			return err
		}
	}
	return nil
}

// tarNode is the node of an archive entry read from tr; nil for a type
// that is not copied.
func tarNode(hdr *tar.Header, tr io.Reader) *node {
	n := &node{mode: uint32(hdr.Mode) & 0o7777, uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime, link: hdr.Linkname,
		rdev: uint64(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))}
	for key, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(key, "SCHILY.xattr."); ok && copyableXattr(x) {
			if n.xattrs == nil {
				n.xattrs = map[string][]byte{}
			}
			n.xattrs[x] = []byte(v)
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		n.typ = unix.S_IFDIR
	case tar.TypeReg, tar.TypeRegA:
		n.typ = unix.S_IFREG
		n.open = func() (io.ReadCloser, error) { return io.NopCloser(tr), nil }
	case tar.TypeSymlink:
		n.typ = unix.S_IFLNK
	case tar.TypeLink:
		n.typ = unix.S_IFREG
		n.hardlink = strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
	case tar.TypeChar:
		n.typ = unix.S_IFCHR
	case tar.TypeBlock:
		n.typ = unix.S_IFBLK
	case tar.TypeFifo:
		n.typ = unix.S_IFIFO
	default:
		return nil
	}
	return n
}

// dirTimes gives the archive's directories their mtimes.
func dirTimes(dt *fsx.Tree, dirs []*tar.Header) {
	for _, hdr := range dirs {
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		fd, err := dt.Open(name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		ts := unix.NsecToTimespec(hdr.ModTime.UnixNano())
		_ = fsx.Futimens(fd, &[2]unix.Timespec{ts, ts})
		unix.Close(fd)
	}
}
