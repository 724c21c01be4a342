// Package layertest builds tar layers and OCI images for tests: every
// entry type the layer spec knows, whiteouts and opaque directories,
// hostile names, and a standard multi-layer image exercising them all.
package layertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// Epoch is the default mtime of generated entries: whole seconds, so that
// every tar format and every extractor agrees on it.
var Epoch = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// Entry is one tar entry to generate.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Body     []byte
	Link     string
	Major    int64
	Minor    int64
	Xattrs   map[string]string
	Mtime    time.Time
}

// File is a regular file.
func File(name, body string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, Body: []byte(body)}
}

// Dir is a directory.
func Dir(name string, mode int64) Entry { return Entry{Name: name, Type: tar.TypeDir, Mode: mode} }

// Symlink is a symbolic link to target.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Mode: 0o777, Link: target}
}

// Hardlink is a hard link to target.
func Hardlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeLink, Mode: 0o644, Link: target}
}

// Char is a character device.
func Char(name string, major, minor int64) Entry {
	return Entry{Name: name, Type: tar.TypeChar, Mode: 0o666, Major: major, Minor: minor}
}

// Fifo is a named pipe.
func Fifo(name string) Entry { return Entry{Name: name, Type: tar.TypeFifo, Mode: 0o644} }

// Whiteout deletes name of lower layers.
func Whiteout(name string) Entry {
	dir, base := "", name
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			dir, base = name[:i+1], name[i+1:]
			break
		}
	}
	return Entry{Name: dir + ".wh." + base, Type: tar.TypeReg, Mode: 0o644}
}

// Opaque hides what lower layers hold in dir.
func Opaque(dir string) Entry {
	return Entry{Name: dir + "/.wh..wh..opq", Type: tar.TypeReg, Mode: 0o644}
}

// Owned sets e's owner.
func Owned(e Entry, uid, gid int) Entry { e.UID, e.GID = uid, gid; return e }

// WithXattrs sets e's extended attributes.
func WithXattrs(e Entry, x map[string]string) Entry { e.Xattrs = x; return e }

// Tar writes entries as an uncompressed tar (PAX where needed).
func Tar(entries ...Entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mt := e.Mtime
		if mt.IsZero() {
			mt = Epoch
		}
		h := &tar.Header{
			Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Uid: e.UID, Gid: e.GID,
			Linkname: e.Link, Devmajor: e.Major, Devminor: e.Minor, ModTime: mt,
			Format: tar.FormatPAX,
		}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		if len(e.Xattrs) > 0 {
			h.PAXRecords = map[string]string{}
			for k, v := range e.Xattrs {
				h.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			panic(fmt.Sprintf("layertest: header %q: %v", e.Name, err))
		}
		if h.Size > 0 {
			if _, err := tw.Write(e.Body); err != nil {
				panic(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// Gzip compresses b.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// DiffID is the digest of an uncompressed layer.
func DiffID(tarBytes []byte) digest.Digest {
	return digest.NewDigestFromBytes(digest.SHA256, sha256Sum(tarBytes))
}

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

// Image is what BuildImage writes.
type Image struct {
	// Layers are uncompressed tars; they are stored gzip-compressed.
	Layers [][]byte
	// DiffIDs overrides the config's diffIDs (to make a mismatch).
	DiffIDs    []digest.Digest
	Cmd        []string
	Entrypoint []string
	Env        []string
	WorkingDir string
	User       string
}

// BuildImage writes img into the layout at dir (created if needed) and
// tags it tag.
func BuildImage(dir, tag string, img Image) error {
	l, err := layout.Init(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH})
	var descs []ocispec.Descriptor
	for i, t := range img.Layers {
		d, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, Gzip(t))
		if err != nil {
			return err
		}
		descs = append(descs, d)
		id := DiffID(t)
		if i < len(img.DiffIDs) {
			id = img.DiffIDs[i]
		}
		if err := cfg.AppendLayer(id); err != nil {
			return err
		}
	}
	for k, v := range map[string]any{"Cmd": img.Cmd, "Entrypoint": img.Entrypoint, "Env": img.Env, "WorkingDir": img.WorkingDir, "User": img.User} {
		switch x := v.(type) {
		case []string:
			if x == nil {
				continue
			}
		case string:
			if x == "" {
				continue
			}
		}
		if err := cfg.SetRuntime(k, v); err != nil {
			return err
		}
	}
	md, err := l.PutImage(cfg, descs, nil)
	if err != nil {
		return err
	}
	return l.Tag(md, tag)
}

// Standard returns the layers of a three-layer image that uses every entry
// type and every layer operation: owners, modes with setuid/setgid/sticky
// bits, xattrs (security.capability too), device nodes and fifos,
// symlinks (absolute ones too), hardlinks within a layer and into a lower
// layer, whiteouts of files and directories, an opaque directory (its
// marker after other entries of the directory), a directory replacing a
// file and a file replacing a directory. busybox, when given, is installed
// as /bin/busybox with a /bin/sh link.
func Standard(busybox []byte) [][]byte {
	capV1 := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	base := []Entry{
		Dir("bin", 0o755),
		Dir("etc", 0o755),
		File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644),
		File("etc/group", "root:x:0:\nalice:x:1000:\nwheel:x:10:alice\n", 0o644),
		Owned(Dir("home", 0o755), 0, 0),
		Owned(Dir("home/alice", 0o750), 1000, 1000),
		Owned(File("home/alice/notes", "hello alice\n", 0o600), 1000, 1000),
		Dir("usr", 0o755),
		Dir("usr/bin", 0o755),
		File("usr/bin/suid", "#!/bin/sh\n", 0o4755),
		File("usr/bin/sgid", "#!/bin/sh\n", 0o2755),
		WithXattrs(File("usr/bin/ping", "ping\n", 0o755), map[string]string{"security.capability": capV1}),
		WithXattrs(File("usr/share-note", "x\n", 0o644), map[string]string{"user.note": "kept"}),
		Dir("tmp", 0o1777),
		Dir("dev", 0o755),
		Char("dev/null", 1, 3),
		Fifo("run-fifo"),
		Symlink("lib", "usr/lib"),
		Dir("usr/lib", 0o755),
		File("usr/lib/libc.so", "libc", 0o755),
		Symlink("etc/abs-link", "/usr/lib/libc.so"),
		File("big", string(bytes.Repeat([]byte("0123456789abcdef"), 40000)), 0o644),
		Hardlink("big-link", "big"),
		Dir("gone-dir", 0o755),
		File("gone-dir/a", "a", 0o644),
		File("gone-file", "bye", 0o644),
		Dir("opq", 0o755),
		File("opq/lower", "lower", 0o644),
		Dir("opq/sub", 0o755),
		File("opq/sub/deep", "deep", 0o644),
		File("file-to-dir", "file", 0o644),
		Dir("dir-to-file", 0o755),
		File("dir-to-file/child", "child", 0o644),
		Dir("locked", 0o000),
		Dir("locked/sub", 0o000),
		File("locked/sub/inside", "hidden", 0o000),
		File("zero-mode", "secret", 0o000),
	}
	if busybox != nil {
		base = append(base, File("bin/busybox", string(busybox), 0o755), Symlink("bin/sh", "busybox"),
			Symlink("bin/echo", "busybox"), Symlink("bin/cat", "busybox"), Symlink("bin/id", "busybox"))
	}
	l2 := []Entry{
		Whiteout("gone-file"),
		Whiteout("gone-dir"),
		Dir("opq", 0o750),
		File("opq/upper", "upper", 0o644),
		Opaque("opq"),
		Dir("file-to-dir", 0o700),
		File("file-to-dir/inside", "inside", 0o644),
		File("dir-to-file", "now a file", 0o640),
		Hardlink("usr/bin/ping-link", "usr/bin/ping"),
		Owned(File("etc/motd", "layer two\n", 0o644), 0, 10),
	}
	l3 := []Entry{
		File("usr/lib/libc.so", "libc v2", 0o755),
		Whiteout("usr/share-note"),
		File("app", "run me", 0o755),
		Hardlink("app-link", "etc/motd"),
		Owned(Dir("srv", 0o2775), 33, 33),
		Owned(Symlink("srv/link", "../etc/motd"), 33, 33),
	}
	return [][]byte{Tar(base...), Tar(l2...), Tar(l3...)}
}

// Hostile returns a corpus of layers that try to reach outside the
// extraction root: each must be refused or confined. sentinel is the
// absolute path of a directory outside the root holding "file" and
// "sub/deep", which no layer may touch.
func Hostile(sentinel string) map[string][]Entry {
	L := File
	return map[string][]Entry{
		"dotdot file":              {L("../sentinel/file", "pwned", 0o644)},
		"dotdot deep":              {L("a/../../sentinel/new", "pwned", 0o644)},
		"absolute name":            {L(sentinel+"/file", "pwned", 0o644)},
		"dotdot dir":               {Dir("../sentinel/sub", 0o777)},
		"symlink parent escape":    {Symlink("up", "../../../../.."), L("up"+sentinel+"/file", "pwned", 0o644)},
		"absolute symlink dir":     {Symlink("s", sentinel), L("s/file", "pwned", 0o644), L("s/new", "pwned", 0o644)},
		"symlink to root":          {Symlink("s", "/"), Dir("s"+sentinel, 0o777), L("s"+sentinel+"/file", "pwned", 0o644)},
		"symlink replaces dir":     {Dir("d", 0o755), Symlink("d", sentinel), L("d/file", "pwned", 0o644)},
		"write over symlink":       {Symlink("f", sentinel+"/file"), L("f", "pwned", 0o644)},
		"dir over symlink":         {Symlink("d", sentinel), Dir("d", 0o700)},
		"chmod via symlink":        {Symlink("x", sentinel+"/file"), Symlink("x", sentinel+"/sub")},
		"hardlink dotdot":          {Hardlink("h", "../sentinel/file")},
		"hardlink absolute":        {Hardlink("h", sentinel+"/file"), L("h", "pwned", 0o644)},
		"hardlink via symlink":     {Symlink("s", sentinel), Hardlink("h", "s/file")},
		"hardlink to symlink":      {Symlink("s", sentinel+"/file"), Hardlink("h", "s"), L("h", "pwned", 0o644)},
		"whiteout dotdot":          {Whiteout("../sentinel/file")},
		"whiteout parent name":     {Dir("a", 0o755), {Name: "a/.wh..", Type: '0', Mode: 0o644}},
		"whiteout via symlink":     {Symlink("s", sentinel), Whiteout("s/file"), Whiteout("s/sub")},
		"whiteout symlink to root": {Symlink("s", "/"), Whiteout("s" + sentinel)},
		"opaque via symlink":       {Symlink("s", sentinel), Opaque("s")},
		"opaque dotdot":            {Opaque("../sentinel")},
		"root as file":             {L(".", "x", 0o644)},
		"xattr via symlink":        {Symlink("s", sentinel+"/file"), WithXattrs(Symlink("s", sentinel+"/file"), map[string]string{"trusted.pwned": "1"})},
		"device over symlink":      {Symlink("n", sentinel+"/file"), Fifo("n")},
		"mtime via symlink dir":    {Symlink("s", sentinel), Dir("s/sub", 0o700)},
		"dotdot symlink target":    {Symlink("s", "../sentinel"), L("s/file", "pwned", 0o644)},
	}
}
