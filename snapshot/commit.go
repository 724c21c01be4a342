package snapshot

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
)

// ErrParentGone means the image a bundle was unpacked from (or last
// committed as) is no longer in its layout, so a commit has nothing to
// build on.
var ErrParentGone = errors.New("bundle's image is no longer in its layout")

// ErrNotOwner means root was asked to commit a bundle an unprivileged
// user unpacked: only that user can.
var ErrNotOwner = errors.New("commit it as that user")

// CommitLock, in a bundle's state directory, serialises commits of one
// bundle.
const CommitLock = "commit.lock"

// ctimeSlack widens the window of files commit compares: the kernel
// stamps ctimes from a coarse clock that may lag the time a bundle
// records by a tick (10 ms at HZ=100). Files copied in that window are
// compared, content too, for nothing, so it stays small.
const ctimeSlack = 50 * time.Millisecond

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
	// layer's mtimes (see WriteOptions.Clamp): the same change then
	// gives the same layer digest on every run.
	Timestamp *time.Time
	// Progress, when set, wraps the uncompressed layer stream on its way
	// to the blob store (a progress bar reads through it).
	Progress func(io.Reader) io.Reader
	// StoreOptions say who commits (see Open): the bundle's store is
	// opened with them.
	StoreOptions StoreOptions
}

// CommitResult is what Commit stored.
type CommitResult struct {
	// Manifest is the new image's manifest, with its platform.
	Manifest ocispec.Descriptor
	Config   digest.Digest
	// Layer is the new layer; nil when nothing changed.
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
// it first, as a file that changes while it is read fails the commit.
func Commit(dir string, l *layout.Layout, opts CommitOptions) (*CommitResult, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if opts.Ref != "" {
		if err := layout.ValidateRef(opts.Ref); err != nil {
			return nil, err
		}
		if _, ok := layout.IsDigestRef(opts.Ref); ok {
			return nil, fmt.Errorf("%w %q: a committed image is named by a tag, not a digest", layout.ErrInvalidRef, opts.Ref)
		}
	}
	if opts.Compression == "" {
		opts.Compression = layout.CompressionGzip
	}
	if _, err := layout.LayerMediaType(opts.Compression); err != nil {
		return nil, err
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	unlock, err := lockBundle(abs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Re-read under the lock: a commit that just finished moved it.
	if rec, err = ReadRecord(abs); err != nil {
		return nil, err
	}
	s, err := Open(rec.Store, opts.StoreOptions)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer s.Close()
	c := &commit{abs: abs, l: l, s: s, rec: rec, opts: opts}
	return c.run()
}

type commit struct {
	abs  string
	l    *layout.Layout
	s    *Store
	rec  *Record
	opts CommitOptions

	d     Driver
	form  *IDMap // the mapping the bundle was written under
	chain []*Info
	ctr   *Container
	img   *layout.Image
}

// lockBundle takes the bundle's commit lock exclusively.
func lockBundle(abs string) (func(), error) {
	state := filepath.Join(abs, BundleState)
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	f, err := os.OpenFile(filepath.Join(state, CommitLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle %s: lock: %w", abs, err)
	}
	return func() { f.Close() }, nil
}

// BundleDiff returns what changed in the bundle dir since it was unpacked
// or last committed: the entries the next commit's layer would hold. It
// changes nothing. o says who asks (see Open).
func BundleDiff(dir string, o StoreOptions) (*Diff, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, err
	}
	s, err := Open(rec.Store, o)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	defer s.Close()
	c := &commit{abs: abs, s: s, rec: rec}
	if err := c.setup(); err != nil {
		return nil, err
	}
	d, err := c.diff()
	if err != nil {
		return nil, fmt.Errorf("diff %s: %w", abs, err)
	}
	return d, nil
}

// setup finds the bundle's driver and snapshots.
func (c *commit) setup() error {
	rec := c.rec
	form, chain, err := c.s.bundleChain(rec, c.abs)
	if err != nil {
		return err
	}
	var d Driver
	if rec.Driver == OverlayDriver {
		// The bundle's overlay works already: skip the driver's trial
		// mount.
		d, err = openOverlay(c.s, form, true)
	} else {
		d, err = newDriver(rec.Driver, c.s, form)
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", c.abs, err)
	}
	if d.Name() != rec.Driver {
		return fmt.Errorf("bundle %s uses the %s driver, which does not work here", c.abs, rec.Driver)
	}
	c.d, c.form, c.chain = d, form, chain
	c.ctr = &Container{Dir: c.abs, Chain: c.chain, Rootless: rec.Rootless, IDMap: rec.IDMap}
	return nil
}

func (c *commit) run() (*CommitResult, error) {
	if err := c.setup(); err != nil {
		return nil, err
	}
	rec := c.rec
	if o, ok := c.d.(*Overlay); ok {
		if err := recoverUpper(o, c.ctr); err != nil {
			return nil, err
		}
	}
	if err := c.loadParent(); err != nil {
		return nil, err
	}

	start := time.Now()
	diff, err := c.diff()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}

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
	var top *Info
	if len(c.chain) > 0 {
		top = c.chain[len(c.chain)-1]
	}
	if !diff.Empty() {
		ly, err := c.putLayer(diff)
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
		Created:    &created,
		CreatedBy:  c.opts.CreatedBy,
		Author:     author,
		Comment:    c.opts.Comment,
		EmptyLayer: diff.Empty(),
	}); err != nil {
		return nil, err
	}
	md, err := c.l.PutImage(cfg, layers, nil)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	res.Manifest = md
	cb, err := cfg.Bytes()
	if err != nil {
		return nil, err
	}
	res.Config = digest.FromBytes(cb)

	// The new layer's snapshot, through the normal extraction path.
	newChain := c.chain
	if res.Layer != nil {
		ly := *res.Layer
		d := c.d
		// The snapshot is fed the diff's tar again rather than the stored
		// blob: no decompression of what was just compressed. Ensure
		// checks the stream against the layer's diffID, so the snapshot
		// holds exactly the committed layer (a file that changed since
		// fails the commit).
		in, err := c.s.Ensure(d, top, Layer{Digest: ly.Descriptor.Digest, DiffID: ly.DiffID, Open: func() (io.ReadCloser, error) {
			pr, pw := io.Pipe()
			go func() {
				pw.CloseWithError(diff.WriteTar(pw, WriteOptions{Clamp: c.opts.Timestamp, Rootless: c.rec.Rootless}))
			}()
			return pr, nil
		}})
		if err != nil {
			return nil, fmt.Errorf("commit %s: snapshot of the new layer: %w", c.abs, err)
		}
		if in.Driver != c.d.Name() {
			return nil, fmt.Errorf("commit %s: snapshot %s of the new layer was made by the %s driver, not %s: remove it (strata snapshots rm) or use another --root", c.abs, in.ID, in.Driver, c.d.Name())
		}
		newChain = append(append([]*Info{}, c.chain...), in)
	}

	if c.opts.Ref != "" {
		err = c.l.Tag(md, c.opts.Ref)
	} else {
		err = c.l.AddUntagged(md)
	}
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}

	// Move the bundle onto the new image.
	layoutAbs, err := filepath.Abs(c.l.Dir())
	if err != nil {
		return nil, err
	}
	next := *rec
	next.Dir, next.Layout, next.Ref = c.abs, layoutAbs, c.opts.Ref
	next.Manifest, next.Config = md.Digest, res.Config
	next.Chain = nil
	for _, in := range newChain {
		next.Chain = append(next.Chain, in.ChainID)
	}
	next.Unpacked = start.UTC()
	if err := c.s.addLayout(layoutAbs); err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.abs, err)
	}
	if res.Layer != nil {
		if err := c.switchRootfs(diff, newChain, &next); err != nil {
			return nil, fmt.Errorf("commit %s: image %s is stored: %w", c.abs, md.Digest, err)
		}
	} else if err := c.writeRecord(&next); err != nil {
		return nil, fmt.Errorf("commit %s: image %s is stored, but the bundle stays on its old image: %w", c.abs, md.Digest, err)
	}
	res.Record = &next
	return res, nil
}

// loadParent reads the bundle's image from the layout it came from and
// makes sure its layers are in the target layout too.
func (c *commit) loadParent() error {
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
	ids := ChainIDs(img.Config.RootFS.DiffIDs)
	if len(ids) != len(rec.Chain) || len(img.Manifest.Layers) != len(ids) {
		return fmt.Errorf("bundle %s: image %s has %d layers, the bundle records %d snapshots", c.abs, rec.Manifest, len(img.Manifest.Layers), len(rec.Chain))
	}
	for i := range ids {
		if ids[i] != rec.Chain[i] {
			return fmt.Errorf("bundle %s: layer %d of image %s is chain %s, the bundle records %s", c.abs, i+1, rec.Manifest, ids[i], rec.Chain[i])
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
			if _, err := c.l.Blobs().CopyFrom(src.Blobs(), ld.Digest, ld.Size); err != nil {
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

// owners says how the rootfs shows owners.
func (c *commit) owners() (owners, error) {
	o := owners{rootless: !c.form.Empty(), idMap: c.rec.IDMap}
	// Who cannot write the bundle's snapshots (root, for a user's
	// bundle, whose store is theirs) does not read its owners either.
	m, err := c.s.opts.writer(c.form)
	if err != nil {
		return o, fmt.Errorf("bundle %s: %w", c.abs, err)
	}
	o.toImage = m
	return o, nil
}

func (c *commit) diff() (*Diff, error) {
	var top *Info
	if len(c.chain) > 0 {
		top = c.chain[len(c.chain)-1]
	}
	own, err := c.owners()
	if err != nil {
		return nil, err
	}
	var files Files
	readFiles := func() error {
		files = Files{}
		if top == nil {
			return nil
		}
		var err error
		if files, err = top.ReadFiles(); err != nil {
			return fmt.Errorf("snapshot %s: %w", top.ID, err)
		}
		return nil
	}
	var d *Diff
	switch o := c.d.(type) {
	case *Overlay:
		// Placeholders and what the user could not write are only
		// known from the file list.
		if c.rec.Rootless {
			if err := readFiles(); err != nil {
				return nil, err
			}
		}
		d, err = diffOverlay(o.Upper(c.ctr), o.Xattrs(), files, own)
	default:
		if err := readFiles(); err != nil {
			return nil, err
		}
		var cutoff time.Time
		if !c.rec.Unpacked.IsZero() {
			cutoff = c.rec.Unpacked.Add(-ctimeSlack)
		}
		lower := ""
		if top != nil {
			lower = top.FS()
		}
		d, err = diffVFS(c.ctr.Rootfs(), lower, files, cutoff, own)
	}
	if err != nil || c.rec.IDMap.Empty() {
		return d, err
	}
	if err := unshiftCaps(d, c.rec.IDMap); err != nil {
		return nil, err
	}
	return d, nil
}

// File capability xattr forms (linux/capability.h): v2 holds the
// capability sets, v3 adds the uid of the user namespace root they are
// for.
const (
	capXattr       = "security.capability"
	capRevisionV2  = 0x02000000
	capRevisionV3  = 0x03000000
	capRevisionBit = 0xff000000
	capV2Size      = 20
	capV3Size      = 24
)

// unshiftCaps puts file capabilities back in the image's terms. In a
// rootfs shifted by m, capabilities are scoped to the container's root:
// the kernel shows (and copy-up and setcap in the container store) the
// v3 form naming its host uid, where the image had the v2 form, which
// means "for root". A root uid that maps back to the image's root gives
// the v2 form again, as the kernel itself writes it for the initial
// namespace; any other mapped uid stays v3 with the image's uid.
func unshiftCaps(d *Diff, m *IDMap) error {
	for _, de := range d.entries {
		if de.e == nil {
			continue
		}
		v, ok := de.e.Xattrs[capXattr]
		if !ok || len(v) != capV3Size || binary.LittleEndian.Uint32(v)&capRevisionBit != capRevisionV3 {
			continue
		}
		host := binary.LittleEndian.Uint32(v[capV2Size:])
		id, err := shift(m.UIDs, int(host), false)
		if err != nil {
			return fmt.Errorf("%s of /%s: root uid %d: %w", capXattr, de.path, host, err)
		}
		var out []byte
		if id == 0 {
			out = append([]byte(nil), v[:capV2Size]...)
			flags := binary.LittleEndian.Uint32(out) &^ capRevisionBit
			binary.LittleEndian.PutUint32(out, capRevisionV2|flags)
		} else {
			out = append([]byte(nil), v...)
			binary.LittleEndian.PutUint32(out[capV2Size:], uint32(id))
		}
		de.e.Xattrs[capXattr] = out
	}
	return nil
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
func (c *commit) putLayer(diff *Diff) (layout.Layer, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := diff.WriteTar(pw, WriteOptions{Clamp: c.opts.Timestamp, Rootless: c.rec.Rootless})
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
	ly, err := c.l.PutLayer(r, layout.WithCompression(c.opts.Compression), layout.WithLevel(level), layout.WithRecompress())
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

// writeRecord replaces the bundle's record, in the store first (a gc
// root) and then in the bundle.
func (c *commit) writeRecord(rec *Record) error {
	rb, err := json.MarshalIndent(rec, "", "\t")
	if err != nil {
		return err
	}
	if err := fsx.WriteFile(filepath.Join(c.s.root, ContainersDir, bundleKey(c.abs)+".json"), rb, 0o644); err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(c.abs, RecordFile), rb, 0o644)
}

// switchRootfs makes the bundle show the new chain. A vfs rootfs already
// holds the new layer's files (only clamped mtimes are put in line). An
// overlay bundle's record moves to the new chain first: its old upper
// directory over the new chain still shows the same tree (what it holds
// is in the new layer too), so that an interruption at any point leaves
// a working bundle. Then the upper directory is swapped for a fresh one
// and the rootfs remounted if it was mounted; leftovers of an interrupted
// swap are put right by the next commit (recoverUpper).
func (c *commit) switchRootfs(diff *Diff, chain []*Info, next *Record) error {
	o, isOverlay := c.d.(*Overlay)
	if !isOverlay {
		if c.opts.Timestamp != nil {
			if err := diff.fixClamped(c.ctr.Rootfs(), *c.opts.Timestamp); err != nil {
				return err
			}
		}
		return c.writeRecord(next)
	}
	newCtr := &Container{Dir: c.abs, Chain: chain, Rootless: c.ctr.Rootless, IDMap: c.ctr.IDMap}
	upper, work := o.Upper(c.ctr), o.Work(c.ctr)
	mounted, err := overlay.IsMounted(c.ctr.Rootfs())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// The next upper and work directories are made aside first.
	nextUpper, err := os.MkdirTemp(c.ctr.State(), UpperDir+swapNext)
	if err != nil {
		return err
	}
	suffix := strings.TrimPrefix(filepath.Base(nextUpper), UpperDir+swapNext)
	nextWork := filepath.Join(c.ctr.State(), WorkDir+swapNext+suffix)
	oldUpper := filepath.Join(c.ctr.State(), UpperDir+swapOld+suffix)
	oldWork := filepath.Join(c.ctr.State(), WorkDir+swapOld+suffix)
	cleanNext := func() {
		_ = fsx.RemoveAll(nextUpper)
		_ = fsx.RemoveAll(nextWork)
	}
	err = os.Mkdir(nextWork, 0o700)
	if err == nil {
		err = os.Chmod(nextUpper, 0o755)
	}
	if err == nil {
		err = copyRootMetaShifted(newCtr.Top().FS(), nextUpper, newCtr.IDMap)
	}
	if err == nil {
		err = c.writeRecord(next)
	}
	if err != nil {
		cleanNext()
		return fmt.Errorf("new upper directory: %w", err)
	}
	// From here on the bundle is on the new image.
	if mounted {
		if err := o.Unmount(c.ctr); err != nil {
			cleanNext()
			return fmt.Errorf("the bundle is on the new image with its old upper directory: %w", err)
		}
	}
	swapErr := func() error {
		if err := os.Rename(upper, oldUpper); err != nil {
			return err
		}
		if err := os.Rename(work, oldWork); err != nil {
			_ = os.Rename(oldUpper, upper)
			return err
		}
		if err := os.Rename(nextUpper, upper); err != nil {
			_ = os.Rename(oldUpper, upper)
			_ = os.Rename(oldWork, work)
			return err
		}
		if err := os.Rename(nextWork, work); err != nil {
			_ = os.Rename(upper, nextUpper)
			_ = os.Rename(oldUpper, upper)
			_ = os.Rename(oldWork, work)
			return err
		}
		return nil
	}()
	if swapErr != nil {
		cleanNext()
	}
	if mounted {
		if err := o.Mount(newCtr); err != nil {
			return fmt.Errorf("remount %s on the new image (strata mount %s): %w", newCtr.Rootfs(), c.abs, err)
		}
	}
	if swapErr != nil {
		return fmt.Errorf("the bundle is on the new image with its old upper directory: %w", swapErr)
	}
	if err := fsx.RemoveAll(oldUpper); err != nil {
		return err
	}
	return fsx.RemoveAll(oldWork)
}

// Name parts of the directories an upper directory swap uses.
const (
	swapNext = ".next-"
	swapOld  = ".old-"
)

// recoverUpper puts right what an interrupted upper directory swap left
// in an overlay bundle's state directory: with no upper directory, the
// old one comes back (it is valid over either chain); fresh ones never
// put in place and old ones already replaced are removed.
func recoverUpper(o *Overlay, ctr *Container) error {
	state := ctr.State()
	ents, err := os.ReadDir(state)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", ctr.Dir, err)
	}
	for _, pair := range [][2]string{{o.Upper(ctr), UpperDir}, {o.Work(ctr), WorkDir}} {
		cur, name := pair[0], pair[1]
		_, statErr := os.Lstat(cur)
		for _, e := range ents {
			n := e.Name()
			p := filepath.Join(state, n)
			switch {
			case strings.HasPrefix(n, name+swapNext):
				if err := fsx.RemoveAll(p); err != nil {
					return err
				}
			case strings.HasPrefix(n, name+swapOld):
				if errors.Is(statErr, os.ErrNotExist) {
					if err := os.Rename(p, cur); err != nil {
						return fmt.Errorf("bundle %s: restore %s: %w", ctr.Dir, n, err)
					}
					statErr = nil
					continue
				}
				if err := fsx.RemoveAll(p); err != nil {
					return err
				}
			}
		}
		if errors.Is(statErr, os.ErrNotExist) && name == WorkDir {
			if err := os.Mkdir(cur, 0o700); err != nil {
				return fmt.Errorf("bundle %s: %w", ctr.Dir, err)
			}
		}
	}
	return nil
}
