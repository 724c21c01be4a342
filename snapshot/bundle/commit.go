package bundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// CommitOptions describe the image Commit makes.
type CommitOptions struct {
	// Ref names the new image in the layout; empty adds it untagged.
	Ref string
	// Author is the config's and history entry's author; empty keeps
	// the parent image's.
	Author string
	// Comment is the history entry's comment (docker commit -m).
	Comment string
	// CreatedBy is the history entry's created_by.
	CreatedBy string
	// Edit changes the new config (Dockerfile --change instructions),
	// before any layer is written.
	Edit func(*layout.Config) error
	// Compression of the new layer (gzip when empty) and its level
	// (0: the format's default).
	Compression layout.Compression
	Level       int
	// Timestamp, when set, is the image's creation time and caps the
	// layer's mtimes (see layer.WriteOptions.Clamp): the same change then
	// gives the same layer digest on every run.
	Timestamp *time.Time
	// Progress, when set, wraps the uncompressed layer stream on its way
	// to the blob store (a progress bar reads through it).
	Progress func(io.Reader) io.Reader
	// snapshot.StoreOptions say who commits (see Open): the bundle's store is
	// opened with them.
	StoreOptions snapshot.StoreOptions
}

// CommitResult is what Commit stored.
type CommitResult struct {
	// Manifest is the new image's manifest, with its platform.
	Manifest ocispec.Descriptor
	Config   digest.Digest
	// snapshot.Layer is the new layer; nil when nothing changed.
	Layer *layout.Layer
	// Entries counts the layer's entries, whiteouts included.
	Entries int
	// Record is the bundle's record after the commit: it now names the
	// new image, and DIR keeps working on top of it.
	Record *Record
}

// Commit turns what changed in the bundle dir since it was unpacked (or
// last committed) into a new layer on top of the bundle's image, stores
// the new image in l and moves the bundle onto it, so that commits stack.
//
// vfs bundles are diffed against the parent snapshot's file list; overlay
// bundles by their upper directory alone. The layer is written as a PAX
// tar, hashed and compressed in one streaming pass into l's blob store.
// An empty diff adds no layer, only a history entry with empty_layer set.
// The config inherits the parent's, with its diffID and history appended
// and opts.Edit applied.
//
// The new layer is then extracted on top of the parent snapshot the
// normal way, the bundle's record names the new image and chain, and an
// overlay rootfs gets a fresh empty upper directory (remounted if it was
// mounted). If Commit fails before the image is named, the layout's names
// and the bundle are as they were (blobs already written are unnamed, and
// gc removes them); after that the error says the image is stored, and
// the bundle is on the old image or, for overlay, on the new one with its
// old upper directory, which shows the same tree.
//
// Nothing stops a container from writing the rootfs during a commit; stop
// it first, as a file that changes while it is read fails the commit. A
// cancelled ctx stops the commit as any other failure does.
func Commit(ctx context.Context, dir string, l *layout.Layout, opts CommitOptions) (*CommitResult, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := checkCommitOptions(&opts); err != nil {
		return nil, err
	}
	if _, err := ReadRecord(abs); err != nil {
		return nil, err
	}
	unlock, err := lockBundle(abs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Read under the lock: a commit that just finished moved it.
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	s, err := snapshot.Open(rec.Store, opts.StoreOptions)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer s.Close()
	c := &commit{abs: abs, l: l, s: s, rec: rec, opts: opts}
	return c.run(ctx)
}

// checkCommitOptions refuses a ref a committed image cannot have and
// an unknown compression, and fills in the default compression.
func checkCommitOptions(opts *CommitOptions) error {
	if opts.Ref != "" {
		if err := layout.ValidateRef(opts.Ref); err != nil {
			return err
		}
		if _, ok := layout.IsDigestRef(opts.Ref); ok {
			return fmt.Errorf("%w %q: a committed image is named by a tag, not a digest", layout.ErrInvalidRef, opts.Ref)
		}
	}
	if opts.Compression == "" {
		opts.Compression = layout.CompressionGzip
	}
	_, err := layout.LayerMediaType(opts.Compression)
	return err
}

type commit struct {
	abs  string
	l    *layout.Layout
	s    *snapshot.Store
	rec  *Record
	opts CommitOptions

	d     snapshot.Driver
	form  *ids.Map // the mapping the bundle was written under
	chain []*snapshot.Info
	ctr   *snapshot.Container
	img   *layout.Image
}

// lockBundle takes the bundle's commit lock exclusively.
func lockBundle(abs string) (func(), error) {
	state := filepath.Join(abs, snapshot.BundleState)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	f, err := os.OpenFile(filepath.Join(state, CommitLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	if err := fsx.Flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle %s: lock: %w", abs, err)
	}
	return func() { f.Close() }, nil
}

// bundleDiff returns what changed in the bundle dir since it was unpacked
// or last committed: the entries the next commit's layer would hold. It
// changes nothing. o says who asks (see Open).
func bundleDiff(ctx context.Context, dir string, o snapshot.StoreOptions) (*layer.Diff, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	s, err := snapshot.Open(rec.Store, o)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer s.Close()
	c := &commit{abs: abs, s: s, rec: rec}
	if err := c.setup(); err != nil {
		return nil, err
	}
	d, err := c.diff(ctx)
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", abs, err)
	}
	return d, nil
}

// setup finds the bundle's driver and snapshots.
func (c *commit) setup() error {
	form, chain, err := bundleChain(c.s, c.rec, c.abs)
	if err != nil {
		return err
	}
	d, err := openDriver(c.rec.Driver, c.s, form, forBundle)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", c.abs, err)
	}
	c.d, c.form, c.chain = d, form, chain
	c.ctr = &snapshot.Container{Dir: c.abs, Chain: c.chain, Rootless: c.rec.Rootless, IDMap: c.rec.IDMap}
	return nil
}

// run makes the commit: the diff, the new image in the layout, the new
// layer's snapshot, the image's name, and the bundle moved onto it.
func (c *commit) run(ctx context.Context) (*CommitResult, error) {
	if err := c.setup(); err != nil {
		return nil, err
	}
	if err := c.d.Recover(c.ctr); err != nil {
		return nil, err
	}
	if err := c.loadParent(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	diff, err := c.diff(ctx)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	res, err := c.store(ctx, diff, start)
	if err != nil {
		return nil, err
	}
	chain, err := c.snapshot(ctx, diff, res)
	if err != nil {
		return nil, err
	}
	if c.opts.Ref != "" {
		err = c.l.Tag(res.Manifest, c.opts.Ref)
	} else {
		err = c.l.AddUntagged(res.Manifest)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	next, err := c.next(res, chain, start)
	if err != nil {
		return nil, err
	}
	if res.Layer != nil {
		err = c.d.Rebase(ctx, c.ctr, snapshot.Rebase{Chain: chain, Diff: diff, Clamp: c.opts.Timestamp, Save: func() error { return writeRecord(c.s, next) }})
		if err != nil {
			return nil, fmt.Errorf("commit %s: image %s is stored: %w", c.abs, res.Manifest.Digest, err)
		}
	} else if err := writeRecord(c.s, next); err != nil {
		return nil, fmt.Errorf("commit %s: image %s is stored, but the bundle stays on its old image: %w", c.abs, res.Manifest.Digest, err)
	}
	res.Record = next
	return res, nil
}

// ownership says how the rootfs shows owners.
func (c *commit) ownership() (layer.Ownership, error) {
	o := layer.Ownership{Rootless: !c.form.Empty(), IDMap: c.rec.IDMap}
	// Who cannot write the bundle's snapshots (root, for a user's
	// bundle, whose store is theirs) does not read its owners either.
	m, err := c.s.Options().Writer(c.form)
	if err != nil {
		return o, fmt.Errorf("bundle %s: %w", c.abs, err)
	}
	o.ToImage = m
	return o, nil
}

// diff is what changed in the bundle's rootfs, as the driver sees it,
// with file capabilities put back in the image's terms.
func (c *commit) diff(ctx context.Context) (*layer.Diff, error) {
	own, err := c.ownership()
	if err != nil {
		return nil, err
	}
	d, err := c.d.Diff(ctx, c.ctr, own, c.rec.Unpacked)
	if err != nil || c.rec.IDMap.Empty() {
		return d, err
	}
	if err := layer.UnshiftCaps(d, c.rec.IDMap); err != nil {
		return nil, err
	}
	return d, nil
}

// store writes the new layer (none for an empty diff), config and
// manifest into the layout.
func (c *commit) store(ctx context.Context, diff *layer.Diff, start time.Time) (*CommitResult, error) {
	created := start.UTC()
	if c.opts.Timestamp != nil {
		created = c.opts.Timestamp.UTC()
	}
	cfg, err := c.config(created)
	if err != nil {
		return nil, err
	}
	res := &CommitResult{Entries: diff.Len()}
	layers := make([]ocispec.Descriptor, 0, len(c.img.Manifest.Layers)+1)
	for _, ld := range c.img.Manifest.Layers {
		ld.MediaType = ociLayerType(ld.MediaType)
		layers = append(layers, ld)
	}
	if !diff.Empty() {
		ly, err := c.putLayer(ctx, diff)
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", c.abs, err)
		}
		res.Layer = &ly
		layers = append(layers, ly.Descriptor)
		if err := cfg.AppendLayer(ly.DiffID); err != nil {
			return nil, err
		}
	}
	author := c.opts.Author
	if author == "" {
		author = c.img.Config.Author
	}
	if err := cfg.AppendHistory(ocispec.History{
		Created: &created, CreatedBy: c.opts.CreatedBy, Author: author,
		Comment: c.opts.Comment, EmptyLayer: diff.Empty(),
	}); err != nil {
		return nil, err
	}
	if res.Manifest, err = c.l.PutImage(cfg, layers, nil); err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	cb, err := cfg.Bytes()
	if err != nil {
		return nil, err
	}
	res.Config = digest.FromBytes(cb)
	return res, nil
}

// snapshot makes the new layer's snapshot, through the normal
// extraction path, and returns the bundle's new chain. The snapshot is
// fed the diff's tar again rather than the stored blob: no decompression
// of what was just compressed. Ensure checks the stream against the
// layer's diffID, so the snapshot holds exactly the committed layer (a
// file that changed since fails the commit).
func (c *commit) snapshot(ctx context.Context, diff *layer.Diff, res *CommitResult) ([]*snapshot.Info, error) {
	if res.Layer == nil {
		return c.chain, nil
	}
	ly := *res.Layer
	var top *snapshot.Info
	if len(c.chain) > 0 {
		top = c.chain[len(c.chain)-1]
	}
	in, err := c.s.Ensure(ctx, c.d, top, snapshot.Layer{Digest: ly.Descriptor.Digest, DiffID: ly.DiffID, Open: func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(diff.WriteTar(pw, layer.WriteOptions{Clamp: c.opts.Timestamp, Rootless: c.rec.Rootless}))
		}()
		return pr, nil
	}})
	if err != nil {
		return nil, fmt.Errorf("commit %s: snapshot of the new layer: %w", c.abs, err)
	}
	return append(append([]*snapshot.Info{}, c.chain...), in), nil
}

// next is the bundle's record once it is on the new image, whose layout
// is remembered as a gc root.
func (c *commit) next(res *CommitResult, chain []*snapshot.Info, start time.Time) (*Record, error) {
	layoutAbs, err := filepath.Abs(c.l.Dir())
	if err != nil {
		return nil, err
	}
	next := *c.rec
	next.Dir, next.Layout, next.Ref = c.abs, layoutAbs, c.opts.Ref
	next.Manifest, next.Config = res.Manifest.Digest, res.Config
	next.Chain = nil
	for _, in := range chain {
		next.Chain = append(next.Chain, in.ChainID)
	}
	next.Unpacked = start.UTC()
	if err := addLayout(c.s, layoutAbs); err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	return &next, nil
}

// loadParent reads the bundle's image from the layout it came from and
// makes sure its layers are in the target layout too.
func (c *commit) loadParent(ctx context.Context) error {
	rec := c.rec
	src := c.l
	// The target layout may hold the image already (it is the bundle's
	// own layout, or a copy of it).
	if _, err := c.l.Blobs().Stat(rec.Manifest); err != nil {
		o, err := layout.Open(rec.Layout)
		if err != nil {
			return fmt.Errorf("bundle %s: layout %s of its image: %w", c.abs, rec.Layout, err)
		}
		defer o.Close()
		src = o
	}
	size, err := src.Blobs().Stat(rec.Manifest)
	if err != nil {
		return fmt.Errorf("bundle %s: manifest %s in %s: %w: %v", c.abs, rec.Manifest, rec.Layout, ErrParentGone, err)
	}
	img, err := src.ReadImage(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: rec.Manifest, Size: size})
	if err != nil {
		return fmt.Errorf("bundle %s: %w", c.abs, err)
	}
	if img.Manifest.Config.Digest != rec.Config {
		return fmt.Errorf("bundle %s: manifest %s has config %s, the bundle records %s", c.abs, rec.Manifest, img.Manifest.Config.Digest, rec.Config)
	}
	chain := snapshot.ChainIDs(img.Config.RootFS.DiffIDs)
	if len(chain) != len(rec.Chain) || len(img.Manifest.Layers) != len(chain) {
		return fmt.Errorf("bundle %s: image %s has %d layers, the bundle records %d snapshots", c.abs, rec.Manifest, len(img.Manifest.Layers), len(rec.Chain))
	}
	for i := range chain {
		if chain[i] != rec.Chain[i] {
			return fmt.Errorf("bundle %s: layer %d of image %s is chain %s, the bundle records %s", c.abs, i+1, rec.Manifest, chain[i], rec.Chain[i])
		}
	}
	if src != c.l {
		if err := c.l.Hold(); err != nil {
			return err
		}
		for _, ld := range img.Manifest.Layers {
			if c.l.Blobs().Has(ld.Digest, ld.Size) {
				continue
			}
			if _, err := c.l.Blobs().CopyFrom(ctx, src.Blobs(), ld.Digest, ld.Size); err != nil {
				return fmt.Errorf("copy layer %s from %s: %w", ld.Digest, rec.Layout, err)
			}
		}
	}
	c.img = img
	return nil
}

// ociLayerType names a Docker layer media type by its OCI equivalent (the
// bytes are the same), so that the new manifest is OCI throughout.
func ociLayerType(mt string) string {
	switch mt {
	case layout.MediaTypeDockerLayer:
		return ocispec.MediaTypeImageLayer
	case layout.MediaTypeDockerLayerGzip:
		return ocispec.MediaTypeImageLayerGzip
	case layout.MediaTypeDockerLayerZstd:
		return ocispec.MediaTypeImageLayerZstd
	}
	return mt
}

// config starts the new config from the parent's.
func (c *commit) config(created time.Time) (*layout.Config, error) {
	cfg, err := layout.ParseConfig(c.img.ConfigRaw)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", c.img.Manifest.Config.Digest, err)
	}
	host, err := layout.ParsePlatform("")
	if err != nil {
		return nil, err
	}
	if c.img.Config.Architecture == "" {
		if err := cfg.Set("architecture", host.Architecture); err != nil {
			return nil, err
		}
		if host.Variant != "" && c.img.Config.Variant == "" {
			if err := cfg.Set("variant", host.Variant); err != nil {
				return nil, err
			}
		}
	}
	if c.img.Config.OS == "" {
		if err := cfg.Set("os", host.OS); err != nil {
			return nil, err
		}
	}
	if err := cfg.Set("created", created); err != nil {
		return nil, err
	}
	if c.opts.Author != "" {
		if err := cfg.Set("author", c.opts.Author); err != nil {
			return nil, err
		}
	}
	if c.opts.Edit != nil {
		if err := c.opts.Edit(cfg); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// putLayer streams the diff's tar into the layout: one goroutine writes
// the tar (reading file contents), PutLayer hashes and compresses it on
// the other cores as it comes.
func (c *commit) putLayer(ctx context.Context, diff *layer.Diff) (layout.Layer, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := diff.WriteTar(pw, layer.WriteOptions{Clamp: c.opts.Timestamp, Rootless: c.rec.Rootless})
		pw.CloseWithError(err)
		done <- err
	}()
	level := c.opts.Level
	if level == 0 {
		level = compression.DefaultLevel
	}
	var r io.Reader = pr
	if c.opts.Progress != nil {
		r = c.opts.Progress(pr)
	}
	ly, err := c.l.PutLayer(ctx, r, layout.WithCompression(c.opts.Compression), layout.WithLevel(level), layout.WithRecompress())
	pr.CloseWithError(errors.New("layer store stopped reading"))
	werr := <-done
	if werr != nil {
		return layout.Layer{}, werr
	}
	if err != nil {
		return layout.Layer{}, err
	}
	return ly, nil
}
