package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/spec"
	"github.com/strata-oci/strata/snapshot/vfs"
)

// UnpackOptions tune Unpack.
type UnpackOptions struct {
	// snapshot.Driver is the snapshot driver's name ("" is vfs).
	Driver string
	// Platform selects an image of an index (nil: the host's).
	Platform *ocispec.Platform
	// IDMap shifts ownership in the rootfs and runs the container in a
	// user namespace with these mappings.
	IDMap *ids.Map
	// snapshot.Layer, when set, is called before each layer is made ready, with
	// whether it had to be extracted.
	Layer func(i, n int, d digest.Digest, extracted bool)
	// OnFallback, when set, lets an unpack that asked for the overlay
	// driver use vfs where overlay does not work: it is called with the
	// reason (which wraps overlay.ErrUnsupported) and the bundle records
	// vfs. When nil, the unpack fails with the reason.
	OnFallback func(reason error)
}

// Unpack makes dir (which must not exist, or be empty) a runtime-spec
// bundle of the image ref in layout l: dir/rootfs made by the driver from
// the image's snapshots (extracted into the store as needed) and
// dir/config.json derived from the image config. dir is marked in
// progress (ProgressFile) before anything is written into it, so a
// directory a killed unpack of the same image left is cleared and done
// again, and one another unpack is writing is refused (ErrBundleBusy).
// On error, a cancelled ctx included, what Unpack wrote is removed, and
// dir too if it made it; snapshots already complete stay.
func Unpack(ctx context.Context, s *snapshot.Store, l *layout.Layout, ref, dir string, o UnpackOptions) (rec *Record, err error) {
	if err := o.IDMap.Validate(); err != nil {
		return nil, err
	}
	d, err := unpackDriver(s, o)
	if err != nil {
		return nil, err
	}
	img, err := imageToUnpack(l, ref, o.Platform)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	layoutAbs, _ := filepath.Abs(l.Dir())
	// The marker goes in first: a killed unpack leaves a directory the
	// next unpack of the image recognises, clears and redoes; a failed
	// one takes back only what it wrote, never another unpack's bundle.
	claim, err := claimBundle(abs, progress{Layout: layoutAbs, Ref: ref, Manifest: img.Descriptor.Digest, Driver: d.Name(), PID: os.Getpid()})
	if err != nil {
		return nil, err
	}
	defer func() {
		release := claim.done
		if err != nil {
			release = claim.abandon
		}
		if rerr := release(); rerr != nil && err == nil {
			rec, err = nil, fmt.Errorf("bundle %s: %w", abs, rerr)
		}
	}()
	if claim.created && !o.IDMap.Empty() {
		// The container's root is a host user other than root: the
		// runtime reaches the rootfs as that user, through DIR.
		if err := os.Chmod(abs, 0o711); err != nil {
			return nil, fmt.Errorf("bundle %s: %w", abs, err)
		}
	}
	u := &unpacker{s: s, l: l, d: d, img: img, dir: abs, o: o}
	c, err := u.rootfs(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = d.RemoveRootfs(c)
		}
	}()
	if err := u.writeSpec(c); err != nil {
		return nil, err
	}
	return u.record(c, layoutAbs, ref)
}

// unpackDriver opens the driver o asks for, for the store's process, and
// checks it can shift owners by o.IDMap before any layer is extracted.
func unpackDriver(s *snapshot.Store, o UnpackOptions) (snapshot.Driver, error) {
	name := o.Driver
	if name == "" {
		name = vfs.Name
	}
	owners := s.Options().Owners()
	d, err := openDriver(name, s, owners, forUnpack)
	if errors.Is(err, overlay.ErrUnsupported) && o.OnFallback != nil {
		o.OnFallback(err)
		d, err = openDriver(vfs.Name, s, owners, forUnpack)
	}
	if err != nil {
		return nil, err
	}
	if err := d.CheckIDMap(o.IDMap); err != nil {
		return nil, err
	}
	return d, nil
}

// imageToUnpack reads the image ref of l and checks its layers are
// layers, each with its diffID.
func imageToUnpack(l *layout.Layout, ref string, p *ocispec.Platform) (*layout.Image, error) {
	img, err := l.Image(ref, p)
	if err != nil {
		return nil, err
	}
	diffIDs := img.Config.RootFS.DiffIDs
	if len(diffIDs) != len(img.Manifest.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diffIDs in config %s", img.Descriptor.Digest, len(img.Manifest.Layers), len(diffIDs), img.Manifest.Config.Digest)
	}
	for _, ld := range img.Manifest.Layers {
		if !layout.IsLayer(ld.MediaType) {
			return nil, fmt.Errorf("image %s: layer %s has media type %q, not a layer", img.Descriptor.Digest, ld.Digest, ld.MediaType)
		}
	}
	return img, nil
}

// unpacker is one Unpack's work once its bundle directory is claimed.
type unpacker struct {
	s   *snapshot.Store
	l   *layout.Layout
	d   snapshot.Driver
	img *layout.Image
	dir string
	o   UnpackOptions
}

// rootfs makes every layer's snapshot ready and the rootfs from them:
// a driver that can builds it from the streams of the layers it
// extracts (vfs), else from the snapshots once they are all there.
func (u *unpacker) rootfs(ctx context.Context) (*snapshot.Container, error) {
	rs := u.d.StreamRootfs(ctx, u.s, filepath.Join(u.dir, snapshot.RootfsDir), u.o.IDMap, len(u.img.Manifest.Layers))
	if rs == nil {
		rs = plainRootfs{u.d}
	}
	defer rs.Stop()
	chain, err := u.snapshots(ctx, rs)
	if err != nil {
		return nil, err
	}
	c := &snapshot.Container{Dir: u.dir, Chain: chain, Rootless: u.s.Options().Rootless, IDMap: u.o.IDMap}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := rs.Create(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// snapshots makes sure the store holds every layer's snapshot and
// returns them, base first. Each snapshot goes in place once the next
// layer has been prepared from it; one made is complete, so it goes in
// place even when the unpack fails later.
func (u *unpacker) snapshots(ctx context.Context, rs snapshot.RootfsStream) (chain []*snapshot.Info, err error) {
	var parent *snapshot.Info
	defer func() { _ = parent.Publish() }()
	diffIDs := u.img.Config.RootFS.DiffIDs
	n := len(u.img.Manifest.Layers)
	for i, ld := range u.img.Manifest.Layers {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		l := snapshot.Layer{Digest: ld.Digest, DiffID: diffIDs[i], Open: func() (io.ReadCloser, error) {
			r, err := u.l.Blobs().Open(ld.Digest, ld.Size)
			if err != nil {
				return nil, err
			}
			return readAhead(r), nil
		}}
		if u.o.Layer != nil {
			u.o.Layer(i, n, ld.Digest, !u.s.Has(u.d, snapshot.ChainID(chainOf(parent), diffIDs[i])))
		}
		in, err := u.s.EnsureStaged(ctx, u.d, parent, rs.Layer(parent, l))
		rs.Settle()
		if err != nil {
			return nil, err
		}
		chain = append(chain, in)
		parent = in
	}
	if err := parent.Publish(); err != nil {
		return nil, err
	}
	return chain, nil
}

// writeSpec writes the bundle's config.json. A rootless overlay mount
// exists only in strata's namespace, and only there do files of a vfs
// rootfs written under its mapping have their owners: the bundle is run
// there.
func (u *unpacker) writeSpec(c *snapshot.Container) error {
	opts := u.s.Options()
	inNS := c.Rootless && opts.UserNS != nil && u.d.NeedsNamespace()
	hostUID, hostGID := opts.HostIDs()
	sp, err := spec.Generate(&u.img.Config, c.Rootfs(), spec.Options{
		Rootless: c.Rootless, InNamespace: inNS, Namespace: opts.UserNS,
		HostUID: hostUID, HostGID: hostGID, IDMap: u.o.IDMap,
	})
	if err != nil {
		return fmt.Errorf("image %s: %w", u.img.Descriptor.Digest, err)
	}
	sb, err := json.MarshalIndent(sp, "", "\t")
	if err != nil {
		return err
	}
	return fsx.WriteFile(filepath.Join(u.dir, SpecFile), sb, 0o644)
}

// record writes the bundle's record (see writeRecord) and remembers the
// layout.
func (u *unpacker) record(c *snapshot.Container, layoutAbs, ref string) (*Record, error) {
	rec := &Record{
		Dir: u.dir, Store: u.s.Root(), Driver: u.d.Name(), Layout: layoutAbs, Ref: ref,
		Manifest: u.img.Descriptor.Digest, Config: u.img.Manifest.Config.Digest,
		Rootless: c.Rootless, IDMap: u.o.IDMap, Owners: u.d.Owners(), Unpacked: time.Now().UTC(),
	}
	if rec.Owners == nil {
		rec.Owners = &ids.Map{}
	}
	if u.o.IDMap.Empty() {
		rec.IDMap = nil
	}
	for _, in := range c.Chain {
		rec.Chain = append(rec.Chain, in.ChainID)
	}
	// The layout goes before the record in the bundle: a bundle is one
	// once it is whole.
	if err := addLayout(u.s, layoutAbs); err != nil {
		return nil, err
	}
	if err := writeRecord(u.s, rec); err != nil {
		return nil, err
	}
	return rec, nil
}

// plainRootfs is the snapshot.RootfsStream of a driver that makes the rootfs
// from the snapshots alone.
type plainRootfs struct{ d snapshot.Driver }

func (p plainRootfs) Layer(_ *snapshot.Info, l snapshot.Layer) snapshot.Layer { return l }
func (p plainRootfs) Settle()                                                 {}
func (p plainRootfs) Stop()                                                   {}
func (p plainRootfs) Create(ctx context.Context, c *snapshot.Container) error {
	return p.d.CreateRootfs(ctx, c)
}

// readAhead reads (and so verifies) a layer blob on a goroutine of its
// own, a few MiB ahead: the decompressor, which sets the pace where a
// layer's files are large, no longer reads or hashes.
func readAhead(rc io.ReadCloser) io.ReadCloser {
	return &aheadReader{Pipe: chunkpipe.New(rc, io.Discard, chunkpipe.Options{ChunkSize: 1 << 20, Chunks: 4, ReadContext: "read layer"}), rc: rc}
}

type aheadReader struct {
	*chunkpipe.Pipe
	rc io.ReadCloser
}

func (a *aheadReader) Close() error {
	a.Stop()
	return a.rc.Close()
}

// chainOf is parent's chain ID, "" for no parent.
func chainOf(parent *snapshot.Info) digest.Digest {
	if parent == nil {
		return ""
	}
	return parent.ChainID
}
