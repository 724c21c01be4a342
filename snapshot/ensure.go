package snapshot

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// Layer names one layer of an image.
type Layer struct {
	// Digest is the blob's digest, DiffID the uncompressed stream's.
	Digest digest.Digest
	DiffID digest.Digest
	// Open opens the layer blob (compressed or not); the reader must
	// verify the blob's digest, as layout's blob store does.
	Open func() (io.ReadCloser, error)
}

// Ensure returns the snapshot of layer l on top of parent (nil for a
// base layer), extracting it with driver d if the store does not hold it
// yet. The snapshot appears only when complete: it is built in ROOT/tmp
// and renamed into place; on any error, the diffID check and a cancelled
// ctx included, nothing is left behind.
func (s *Store) Ensure(ctx context.Context, d Driver, parent *Info, l Layer) (*Info, error) {
	in, err := s.ensure(ctx, d, parent, l)
	if err != nil {
		return nil, err
	}
	if err := in.Publish(); err != nil {
		return nil, err
	}
	return in, nil
}

// EnsureStaged is Ensure for a chain of layers: a snapshot it builds is
// returned before it is in place (its Dir is still its staging
// directory, its metadata synced on a goroutine) when d copies its
// parents (Driver.Stacked is false), and the next EnsureStaged, once it
// has prepared the layer above from it, puts it in place. The caller
// calls Publish on the last one, and on any parent it gives up with.
// parent, if still staged, is put in place before EnsureStaged returns,
// whatever happens.
func (s *Store) EnsureStaged(ctx context.Context, d Driver, parent *Info, l Layer) (_ *Info, err error) {
	defer func() {
		if perr := parent.Publish(); err == nil && perr != nil {
			err = perr
		}
	}()
	in, err := s.ensure(ctx, d, parent, l)
	if err != nil {
		return nil, err
	}
	if d.Stacked() {
		// A stacked driver's next layer reads this one's files in
		// place.
		if err := in.Publish(); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// ensure returns the snapshot of l in place or, built now, staged.
func (s *Store) ensure(ctx context.Context, d Driver, parent *Info, l Layer) (*Info, error) {
	chain := ChainID(parent.chainID(), l.DiffID)
	if err := chain.Validate(); err != nil {
		return nil, fmt.Errorf("layer %s: diffID %q: %w", l.Digest, l.DiffID, err)
	}
	key := Key(d.Name(), d.Owners())
	if parent != nil && parent.key != key {
		return nil, fmt.Errorf("layer %s: parent snapshot %s is not one of the %s driver's under this ID mapping (%s)", l.Digest, parent.Name(), d.Name(), key)
	}
	if in, err := readInfo(s.dir(key, chain)); err == nil {
		if in.Driver != d.Name() {
			return nil, fmt.Errorf("snapshot %s of layer %s: %w: made by the %s driver, not %s", in.Name(), l.Digest, ErrWrongDriver, in.Driver, d.Name())
		}
		return in, nil
	}
	if _, err := s.keyDir(key); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain.Encoded(), err)
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, TmpDir), chain.Encoded()[:12]+"-")
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", chain.Encoded(), err)
	}
	b := &build{s: s, d: d, parent: parent, l: l, tmp: tmp, chain: chain, key: key}
	in, err := b.run(ctx)
	if err != nil {
		_ = fsx.RemoveAll(tmp)
		return nil, err
	}
	return in, nil
}

// build is the making of one snapshot in its staging directory tmp.
type build struct {
	s      *Store
	d      Driver
	parent *Info
	l      Layer
	tmp    string
	chain  digest.Digest
	key    string
}

func (b *build) run(ctx context.Context) (*Info, error) {
	fsDir := filepath.Join(b.tmp, FSDir)
	if err := os.Mkdir(fsDir, 0o755); err != nil {
		return nil, err
	}
	files, err := b.extract(ctx, fsDir)
	if err != nil {
		return nil, err
	}
	if err := layer.WriteFiles(filepath.Join(b.tmp, FilesFile), files); err != nil {
		return nil, err
	}
	size, count, err := b.d.Usage(fsDir, files)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: size: %w", b.chain.Encoded(), err)
	}
	owners := b.d.Owners()
	if owners == nil {
		owners = &ids.Map{}
	}
	in := &Info{
		ID: b.chain.Encoded(), ChainID: b.chain, Parent: b.parent.chainID(), DiffID: b.l.DiffID,
		Layer: b.l.Digest, Driver: b.d.Name(), Owners: owners, Size: size, Files: count, Created: time.Now().UTC(),
		key: b.key,
	}
	meta, _ := json.MarshalIndent(in, "", "\t")
	if err := os.WriteFile(filepath.Join(b.tmp, MetaFile), meta, 0o644); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", b.chain.Encoded(), err)
	}
	// The syncs wait for the disk (on a virtual machine, for the host to
	// write back everything the guest wrote): they run beside what comes
	// next, the rename waits for them.
	p := &publication{tmp: b.tmp, final: b.s.dir(b.key, b.chain), synced: make(chan struct{})}
	go func() {
		defer close(p.synced)
		p.err = fsx.SyncFiles(b.tmp, layer.TarSplitFile, FilesFile, MetaFile)
	}()
	in.files = files
	in.Dir = b.tmp
	in.pending = p
	return in, nil
}

// extract prepares fsDir with the driver and extracts the layer there,
// returning the merged file list up to it. The layer is decompressed and
// hashed from the start, while the driver prepares the directory (a vfs
// copy of the parent can take a while): the stream runs ahead into its
// buffer, and a vfs rootfs being built from the same stream goes on.
func (b *build) extract(ctx context.Context, fsDir string) (layer.Files, error) {
	rc, err := b.l.Open()
	if err != nil {
		return nil, fmt.Errorf("open layer %s: %w", b.l.Digest, err)
	}
	defer rc.Close()
	ls, err := layer.NewStream(rc, b.l.DiffID)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", b.l.Digest, err)
	}
	defer ls.Close()
	parentFiles := readFilesAhead(b.parent)
	opts, err := b.d.PrepareLayer(ctx, fsDir, b.parent)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot of layer %s: %w", b.l.Digest, err)
	}
	files, err := parentFiles()
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", b.parent.ID, err)
	}
	// Nothing reads the parent's staging directory any more.
	if err := b.parent.Publish(); err != nil {
		return nil, err
	}
	err = layer.Extract(ctx, fsDir, b.tmp, ls, opts, files)
	if cerr := rc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", b.l.Digest, err)
	}
	return files, nil
}

// publication is a complete snapshot still in its staging directory.
type publication struct {
	tmp, final string
	synced     chan struct{}
	err        error // from the syncs, read once synced is closed
}

// Publish puts a snapshot EnsureStaged returned staged in place, once
// its files are synced; another process's copy of the same snapshot, in
// place first, is taken instead. A snapshot that could not be synced is
// removed. Nothing to do for nil or a snapshot already in place.
func (in *Info) Publish() error {
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
func readFilesAhead(parent *Info) func() (layer.Files, error) {
	if parent == nil {
		return func() (layer.Files, error) { return layer.Files{}, nil }
	}
	if f := parent.files; f != nil {
		parent.files = nil
		return func() (layer.Files, error) { return f, nil }
	}
	var (
		f    layer.Files
		err  error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		f, err = parent.ReadFiles()
	}()
	return func() (layer.Files, error) {
		<-done
		return f, err
	}
}

// ReadFiles reads the snapshot's merged file list.
func (i *Info) ReadFiles() (layer.Files, error) {
	return layer.ReadFiles(filepath.Join(i.Dir, FilesFile))
}

// chainID is the snapshot's chain ID, "" for nil (no parent).
func (i *Info) chainID() digest.Digest {
	if i == nil {
		return ""
	}
	return i.ChainID
}

// ChainID is the chain ID of a layer with diffID on top of the chain
// parent ("" for a base layer), as the image spec defines it.
func ChainID(parent, diffID digest.Digest) digest.Digest {
	if parent == "" {
		return diffID
	}
	return digest.FromString(parent.String() + " " + diffID.String())
}

// ChainIDs computes the chain IDs of a list of diffIDs, base first.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	var parent digest.Digest
	for i, d := range diffIDs {
		parent = ChainID(parent, d)
		out[i] = parent
	}
	return out
}
