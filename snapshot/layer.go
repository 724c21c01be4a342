package snapshot

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
)

// LayerSource opens a layer blob (compressed or not); the reader must
// verify the blob's digest, as layout's blob store does.
type LayerSource func() (io.ReadCloser, error)

// Layer names one layer of an image.
type Layer struct {
	// Digest is the blob's digest, DiffID the uncompressed stream's.
	Digest digest.Digest
	DiffID digest.Digest
	Open   LayerSource
	// Done, when closed, abandons the extraction (see ApplyOptions.Done).
	Done <-chan struct{}
}

// Ensure returns the snapshot of layer on top of parent (nil for a base
// layer), extracting it with driver d if the store does not hold it yet.
// The snapshot appears only when complete: it is built in ROOT/tmp and
// renamed into place; on any error, the diffID check included, nothing
// is left behind.
func (s *Store) Ensure(d Driver, parent *Info, layer Layer) (*Info, error) {
	return s.ensure(d, parent, layer, false)
}

// ensure is Ensure; with later set, a snapshot it builds is returned
// before it is in place (Dir is still its staging directory): its
// metadata is synced on a goroutine while the next ensure prepares the
// layer above from it, which then puts it in place (publish). The caller
// publishes the last one. parent, if still to be published, is published
// before ensure returns, whatever happens.
func (s *Store) ensure(d Driver, parent *Info, layer Layer, later bool) (_ *Info, err error) {
	defer func() {
		if perr := parent.publish(); err == nil && perr != nil {
			err = perr
		}
	}()
	var parentChain digest.Digest
	chain := layer.DiffID
	if parent != nil {
		parentChain = parent.ChainID
		chain = digest.FromString(parent.ChainID.String() + " " + layer.DiffID.String())
	}
	if err := chain.Validate(); err != nil {
		return nil, fmt.Errorf("layer %s: diffID %q: %w", layer.Digest, layer.DiffID, err)
	}
	key := ownersKey(d.Name(), d.Owners())
	if parent != nil && parent.key != key {
		return nil, fmt.Errorf("layer %s: parent snapshot %s is not one of the %s driver's under this ID mapping (%s)", layer.Digest, parent.Name(), d.Name(), key)
	}
	final := s.dir(key, chain)
	if in, err := readInfo(final); err == nil {
		return in, nil
	}
	if _, err := s.keyDir(key); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain.Encoded(), err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, TmpDir), chain.Encoded()[:12]+"-")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain.Encoded(), err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = fsx.RemoveAll(tmp)
		}
	}()
	fsDir := filepath.Join(tmp, FSDir)
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return nil, err
	}
	// The layer is decompressed and hashed from here on, while the
	// driver prepares the directory (a vfs copy of the parent can take a
	// while): the stream runs ahead into its buffer, and a vfs rootfs
	// being built from the same stream (see rootfsStream) goes on.
	rc, err := layer.Open()
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", layer.Digest, err)
	}
	ls, err := startLayerStream(rc, layer.DiffID)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	closed := false
	closeLayer := func() error {
		if closed {
			return nil
		}
		closed = true
		ls.stop()
		return rc.Close()
	}
	defer closeLayer()
	parentFiles := readFilesAhead(parent)
	opts, err := d.PrepareLayer(fsDir, parent)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot of layer %s: %w", layer.Digest, err)
	}
	opts.Done = layer.Done
	files := Files{}
	if parent != nil {
		if files, err = parentFiles(); err != nil {
			return nil, fmt.Errorf("snapshot %s: %w", parent.ID, err)
		}
	}
	// Nothing reads the parent's staging directory any more.
	if err := parent.publish(); err != nil {
		return nil, err
	}
	err = extract(fsDir, ls, layer.DiffID, tmp, opts, files)
	if cerr := closeLayer(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", layer.Digest, err)
	}
	if err := writeFiles(filepath.Join(tmp, FilesFile), files, false); err != nil {
		return nil, err
	}
	var size, count int64
	if d.Name() == VFS {
		// A vfs tree is its file list: no walk needed.
		size, count = filesUsage(files)
	} else if size, count, err = diskUsage(fsDir); err != nil {
		return nil, fmt.Errorf("snapshot %s: size: %w", chain.Encoded(), err)
	}
	owners := d.Owners()
	if owners == nil {
		owners = &IDMap{}
	}
	in := &Info{
		ID: chain.Encoded(), ChainID: chain, Parent: parentChain, DiffID: layer.DiffID,
		Layer: layer.Digest, Driver: d.Name(), Owners: owners, Size: size, Files: count, Created: time.Now().UTC(),
		key: key,
	}
	b, _ := json.MarshalIndent(in, "", "\t")
	if err := os.WriteFile(filepath.Join(tmp, MetaFile), b, 0o644); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain.Encoded(), err)
	}
	// The syncs wait for the disk (on a virtual machine, for the host to
	// write back everything the guest wrote): they run beside what comes
	// next, the rename waits for them.
	p := &publication{tmp: tmp, final: final, synced: make(chan struct{})}
	go func() {
		defer close(p.synced)
		p.err = fsx.SyncFiles(tmp, TarSplitFile, FilesFile, MetaFile)
	}()
	ok = true // tmp is p's now
	in.files = files
	in.Dir = tmp
	in.pending = p
	if !later {
		if err := in.publish(); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// publication is a complete snapshot still in its staging directory.
type publication struct {
	tmp, final string
	synced     chan struct{}
	err        error // from the syncs, read once synced is closed
}

// publish puts a snapshot ensure returned early in place, once its files
// are synced; another process's copy of the same snapshot, in place
// first, is taken instead. A snapshot that could not be synced is
// removed. Nothing to do for nil or a snapshot already in place.
func (in *Info) publish() error {
	if in == nil || in.pending == nil {
		return nil
	}
	p := in.pending
	in.pending = nil
	<-p.synced
	if p.err != nil {
		_ = fsx.RemoveAll(p.tmp)
		return fmt.Errorf("snapshot %s: %w", in.ID, p.err)
	}
	if err := os.Rename(p.tmp, p.final); err != nil {
		other, rerr := readInfo(p.final)
		_ = fsx.RemoveAll(p.tmp)
		if rerr != nil {
			return fmt.Errorf("snapshot %s: %w", in.ID, err)
		}
		*in = *other
		return nil
	}
	_ = fsx.SyncDir(filepath.Dir(p.final))
	in.Dir = p.final
	return nil
}

// readFilesAhead returns the file list of parent (nil: none) to build
// the next layer's on: the one the Ensure that made parent handed on, or
// else the one on disk, read while the driver prepares the directory.
func readFilesAhead(parent *Info) func() (Files, error) {
	if parent == nil {
		return func() (Files, error) { return Files{}, nil }
	}
	if f := parent.files; f != nil {
		parent.files = nil
		return func() (Files, error) { return f, nil }
	}
	var (
		f    Files
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		f, err = parent.ReadFiles()
	}()
	return func() (Files, error) {
		<-done
		return f, err
	}
}

// extract applies the layer stream ls on dir, records its tar-split
// metadata (and the files of entries a later entry replaced) in the
// snapshot directory snap, and checks the uncompressed stream against
// diffID: one pass, the decompressing and hashing on ls's goroutine.
func extract(dir string, ls *layerStream, diffID digest.Digest, snap string, opts ApplyOptions, files Files) (err error) {
	tsf, err := os.OpenFile(filepath.Join(snap, TarSplitFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer tsf.Close()
	// Metadata is small next to the layer: the fastest level keeps its
	// compression off the extraction's critical path.
	zw, _ := gzip.NewWriterLevel(tsf, gzip.BestSpeed)
	bw := bufio.NewWriterSize(zw, 256*1024)
	applyErr := applyRecording(dir, ls, opts, files, newPacker(bw), filepath.Join(snap, ShadowDir))
	// The hash is complete once the stream's goroutine is done.
	ls.stop()
	if applyErr != nil {
		return applyErr
	}
	if got := ls.digest(); got != diffID {
		return fmt.Errorf("%w: uncompressed stream is %s, config says %s", ErrDiffIDMismatch, got, diffID)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	// Synced with the snapshot's other files before it is put in place.
	return tsf.Close()
}

// ShadowDir, in a snapshot, holds the files of a layer's entries that a
// later entry of the same layer replaced or removed (a name given twice,
// a directory in place of a file, a file in place of its parent
// directory), named by the entry's number in the layer counted from 0:
// fs/ no longer has them, and a rebuild needs their bytes. For an entry
// whose name led through a symlink it holds, until the file is replaced,
// a symlink to the file's real path in fs/. Snapshots of layers that do
// neither have none.
const ShadowDir = "shadow"

// record is one line of tarsplit.json.gz: a tar-split entry, and for a
// sparse file the regions of the file its data fills (the archive holds
// them one after the other, holes left out). Older snapshots have no
// sparse field; tar-split itself ignores it.
type record struct {
	storage.Entry
	Sparse []fragment `json:"sparse,omitempty"`
}

// packer writes tar-split entries as JSON lines. Unlike tar-split's own
// packer it accepts a name twice: layers may legally repeat an entry.
type packer struct {
	enc *json.Encoder
	pos int
}

func newPacker(w io.Writer) *packer { return &packer{enc: json.NewEncoder(w)} }

func (p *packer) AddEntry(e storage.Entry) (int, error) {
	e.Position = p.pos
	if err := p.enc.Encode(e); err != nil {
		return -1, err
	}
	p.pos++
	return e.Position, nil
}

// addFile records a file entry with its sparse map (nil: not sparse).
func (p *packer) addFile(e storage.Entry, sparse []fragment) error {
	if sparse == nil {
		_, err := p.AddEntry(e)
		return err
	}
	e.Position = p.pos
	if err := p.enc.Encode(record{Entry: e, Sparse: sparse}); err != nil {
		return err
	}
	p.pos++
	return nil
}

// filesUsage is diskUsage of a tree that holds exactly files (a vfs
// snapshot): every name but the root counts, a hardlink's size too.
func filesUsage(files Files) (size, count int64) {
	for p, e := range files {
		if p == "." {
			continue
		}
		count++
		if e.Type == TypeReg && !e.Placeholder {
			size += e.Size
		}
	}
	return size, count
}

// diskUsage sums the apparent size of the regular files under dir and
// counts its entries. Directories an unprivileged owner cannot read (mode
// 0000 in the image) are lent owner permissions for the time of the read.
func diskUsage(dir string) (size, count int64, err error) {
	var walk func(p string) error
	walk = func(p string) error {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		count++
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			size += st.Size
			return nil
		case unix.S_IFDIR:
		default:
			return nil
		}
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrPermission) && unix.Chmod(p, (st.Mode&0o7777)|0o500) == nil {
			f, err = os.Open(p)
			_ = unix.Chmod(p, st.Mode&0o7777)
		}
		if err != nil {
			return err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		if st.Mode&0o100 == 0 && len(names) > 0 {
			// Lstat of the children needs search permission.
			if err := unix.Chmod(p, (st.Mode&0o7777)|0o100); err == nil {
				defer unix.Chmod(p, st.Mode&0o7777)
			}
		}
		for _, n := range names {
			if err := walk(filepath.Join(p, n)); err != nil {
				return err
			}
		}
		return nil
	}
	err = walk(dir)
	return size, count - 1, err
}

// ErrVerify means a snapshot's files no longer rebuild its layer.
var ErrVerify = errors.New("snapshot does not rebuild its layer")

// Rebuild writes the snapshot's layer, uncompressed and byte for byte as
// it was extracted, to w: the tar-split metadata gives headers and
// padding, fs/ gives the file contents.
func (i *Info) Rebuild(w io.Writer) error {
	f, err := os.Open(filepath.Join(i.Dir, TarSplitFile))
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", i.ID, err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("snapshot %s: %s: %w", i.ID, TarSplitFile, err)
	}
	defer zr.Close()
	rb, err := newRebuilder(i.Dir, zr)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", i.ID, err)
	}
	defer rb.close()
	if err := asm.WriteOutputTarStream(rb, rb, w); err != nil {
		return fmt.Errorf("snapshot %s: rebuild layer: %w", i.ID, err)
	}
	return nil
}

// Verify rebuilds the snapshot's layer and checks it against its diffID.
func (i *Info) Verify() error {
	h := i.DiffID.Algorithm().Hash()
	if err := i.Rebuild(h); err != nil {
		return err
	}
	if got := digest.NewDigest(i.DiffID.Algorithm(), h); got != i.DiffID {
		return fmt.Errorf("snapshot %s: %w: rebuilt %s, want %s", i.ID, ErrVerify, got, i.DiffID)
	}
	return nil
}

// rebuilder is both halves tar-split's assembler asks for: the unpacker
// of tarsplit.json.gz and the getter of file contents. The assembler
// asks for the contents of each file entry with data right after the
// unpacker returned it, so the rebuilder knows which entry a name
// stands for: a file that a later entry replaced is served from the
// shadow directory by its number, a sparse file as its data regions.
type rebuilder struct {
	dec    *json.Decoder
	fs     *fsx.Tree
	shadow *fsx.Tree
	// kept lists the entry numbers the shadow directory holds.
	kept   map[int]bool
	seq    int
	sparse []fragment
}

func newRebuilder(snap string, r io.Reader) (*rebuilder, error) {
	t, err := fsx.OpenTree(filepath.Join(snap, FSDir))
	if err != nil {
		return nil, err
	}
	rb := &rebuilder{dec: json.NewDecoder(r), fs: t, seq: -1}
	names, err := os.ReadDir(filepath.Join(snap, ShadowDir))
	if errors.Is(err, fs.ErrNotExist) {
		return rb, nil
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	if rb.shadow, err = fsx.OpenTree(filepath.Join(snap, ShadowDir)); err != nil {
		t.Close()
		return nil, err
	}
	rb.kept = map[int]bool{}
	for _, n := range names {
		if v, err := strconv.Atoi(n.Name()); err == nil {
			rb.kept[v] = true
		}
	}
	return rb, nil
}

func (rb *rebuilder) close() {
	rb.fs.Close()
	if rb.shadow != nil {
		rb.shadow.Close()
	}
}

func (rb *rebuilder) Next() (*storage.Entry, error) {
	var rec record
	if err := rb.dec.Decode(&rec); err != nil {
		return nil, err
	}
	if rec.Type == storage.FileType {
		rb.seq++
		rb.sparse = rec.Sparse
	}
	return &rec.Entry, nil
}

func (rb *rebuilder) Get(name string) (io.ReadCloser, error) {
	var (
		f   *os.File
		err error
	)
	if rb.kept[rb.seq] {
		// A symlink there says where in fs/ the file is: its name led
		// through a symlink that a later entry may have changed.
		buf := make([]byte, unix.PathMax)
		if n, err := unix.Readlinkat(rb.shadow.Fd(), strconv.Itoa(rb.seq), buf); err == nil {
			if f, err = (treeGetter{rb.fs}).open(string(buf[:n])); err != nil {
				return nil, fmt.Errorf("%s (entry %d): %w", name, rb.seq, err)
			}
			return rb.wrap(f), nil
		}
		fd, err := rb.shadow.OpenReadLending(strconv.Itoa(rb.seq))
		if err != nil {
			return nil, fmt.Errorf("%s (entry %d, replaced later in the layer): %w", name, rb.seq, err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return nil, fmt.Errorf("%s (entry %d, replaced later in the layer): not a regular file", name, rb.seq)
		}
		f = os.NewFile(uintptr(fd), name)
	} else if f, err = (treeGetter{rb.fs}).open(name); err != nil {
		return nil, err
	}
	return rb.wrap(f), nil
}

// wrap reads a sparse entry's file as the archive holds it.
func (rb *rebuilder) wrap(f *os.File) io.ReadCloser {
	if rb.sparse != nil {
		return &fragmentReader{f: f, c: f, frags: rb.sparse}
	}
	return f
}

// treeGetter serves file contents from a snapshot's fs/, confined to it.
type treeGetter struct{ t *fsx.Tree }

func (g treeGetter) Get(name string) (io.ReadCloser, error) { return g.open(name) }

func (g treeGetter) open(name string) (*os.File, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	fd, err := g.t.OpenReadLending(n)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: not a regular file in the snapshot", name)
	}
	return os.NewFile(uintptr(fd), name), nil
}
