package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/chunkpipe"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/layout"
)

// UnpackOptions tune Unpack.
type UnpackOptions struct {
	// Driver is the snapshot driver's name ("" is vfs).
	Driver string
	// Platform selects an image of an index (nil: the host's).
	Platform *ocispec.Platform
	// IDMap shifts ownership in the rootfs and runs the container in a
	// user namespace with these mappings.
	IDMap *IDMap
	// Layer, when set, is called before each layer is made ready, with
	// whether it had to be extracted.
	Layer func(i, n int, d digest.Digest, extracted bool)
	// Done, when closed, abandons the unpack (ErrInterrupted): the
	// bundle directory is removed and no partial snapshot stays.
	Done <-chan struct{}
}

// Unpack makes dir (which must not exist, or be empty) a runtime-spec
// bundle of the image ref in layout l: dir/rootfs made by the driver from
// the image's snapshots (extracted into the store as needed) and
// dir/config.json derived from the image config. dir is marked in
// progress (ProgressFile) before anything is written into it, so a
// directory a killed unpack of the same image left is cleared and done
// again, and one another unpack is writing is refused (ErrBundleBusy).
// On error what Unpack wrote is removed, and dir too if it made it;
// snapshots already complete stay.
func (s *Store) Unpack(l *layout.Layout, ref, dir string, o UnpackOptions) (rec *Record, err error) {
	if o.Driver == "" {
		o.Driver = VFS
	}
	if err := o.IDMap.Validate(); err != nil {
		return nil, err
	}
	d, err := NewDriver(o.Driver, s)
	if err != nil {
		return nil, err
	}
	key := ownersKey(d.Name(), d.Owners())
	if ov, ok := d.(*Overlay); ok && !o.IDMap.Empty() {
		// Before any layer is extracted: can this store's layers be
		// mounted shifted at all?
		if err := ov.checkIDMap(o.IDMap); err != nil {
			return nil, err
		}
	}
	img, err := l.Image(ref, o.Platform)
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
		if rerr := claim.release(err != nil); rerr != nil && err == nil {
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

	// vfs builds the rootfs from the layers it extracts (vfs_stream.go).
	rs := newRootfsStream(d, s, filepath.Join(abs, RootfsDir), o.IDMap, len(img.Manifest.Layers))
	defer rs.stop()
	var chain []*Info
	var parent *Info
	// Each snapshot goes in place once the next layer has been prepared
	// from it; one made is complete, so it goes in place even when the
	// unpack fails later.
	defer func() { _ = parent.publish() }()
	for i, ld := range img.Manifest.Layers {
		ld := ld
		if interrupted(o.Done) {
			return nil, ErrInterrupted
		}
		layer := Layer{Digest: ld.Digest, DiffID: diffIDs[i], Done: o.Done, Open: func() (io.ReadCloser, error) {
			r, err := l.Blobs().Open(ld.Digest, ld.Size)
			if err != nil {
				return nil, err
			}
			return readAhead(r), nil
		}}
		if o.Layer != nil {
			_, statErr := os.Stat(s.dir(key, chainOf(parent, diffIDs[i])))
			o.Layer(i, len(img.Manifest.Layers), ld.Digest, statErr != nil)
		}
		// overlay applies a layer with its lower layers mounted from
		// their place in the store: only vfs, whose layer is applied on a
		// copy, can leave its parent staged until then.
		in, err := s.ensure(d, parent, rs.layer(parent, layer), d.Name() == VFS)
		rs.settle()
		if err != nil {
			return nil, err
		}
		chain = append(chain, in)
		parent = in
	}
	if err := parent.publish(); err != nil {
		return nil, err
	}
	c := &Container{Dir: abs, Chain: chain, Rootless: s.opts.Rootless, IDMap: o.IDMap}
	if interrupted(o.Done) {
		return nil, ErrInterrupted
	}
	if err := rs.createRootfs(d, c); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = d.RemoveRootfs(c)
		}
	}()
	// A rootless overlay mount exists only in strata's namespace, and
	// only there do files of a vfs rootfs written under its mapping have
	// their owners: the bundle is run there.
	inNS := c.Rootless && s.opts.UserNS != nil && (d.Name() == OverlayDriver || NeedsNamespace(d.Owners()))
	hostUID, hostGID := s.opts.hostIDs()
	spec, err := GenerateSpec(&img.Config, c.Rootfs(), SpecOptions{
		Rootless: c.Rootless, InNamespace: inNS, Namespace: s.opts.UserNS,
		HostUID: hostUID, HostGID: hostGID, IDMap: o.IDMap,
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", img.Descriptor.Digest, err)
	}
	sb, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return nil, err
	}
	if err := fsx.WriteFile(filepath.Join(abs, SpecFile), sb, 0o644); err != nil {
		return nil, err
	}
	rec = &Record{
		Dir: abs, Store: s.root, Driver: d.Name(), Layout: layoutAbs, Ref: ref,
		Manifest: img.Descriptor.Digest, Config: img.Manifest.Config.Digest,
		Rootless: c.Rootless, IDMap: o.IDMap, Owners: d.Owners(), Unpacked: time.Now().UTC(),
	}
	if rec.Owners == nil {
		rec.Owners = &IDMap{}
	}
	if o.IDMap.Empty() {
		rec.IDMap = nil
	}
	for _, in := range chain {
		rec.Chain = append(rec.Chain, in.ChainID)
	}
	rb, _ := json.MarshalIndent(rec, "", "\t")
	if err := fsx.WriteFile(filepath.Join(s.root, ContainersDir, bundleKey(abs)+".json"), rb, 0o644); err != nil {
		return nil, err
	}
	if err := s.addLayout(layoutAbs); err != nil {
		return nil, err
	}
	// The record goes last: a bundle is one once it is whole.
	if err := fsx.WriteFile(filepath.Join(abs, RecordFile), rb, 0o644); err != nil {
		return nil, err
	}
	return rec, nil
}

func interrupted(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func chainOf(parent *Info, diffID digest.Digest) digest.Digest {
	if parent == nil {
		return diffID
	}
	return digest.FromString(parent.ChainID.String() + " " + diffID.String())
}

// ChainIDs computes the chain IDs of a list of diffIDs, base first.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
		} else {
			out[i] = digest.FromString(out[i-1].String() + " " + d.String())
		}
	}
	return out
}

// bundleKey names a bundle's record in ROOT/containers.
func bundleKey(abs string) string {
	h := sha256.Sum256([]byte(abs))
	return hex.EncodeToString(h[:16])
}

// ReadRecord reads the record of the bundle dir.
func ReadRecord(dir string) (*Record, error) {
	b, err := os.ReadFile(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("bundle %s: %w (no %s)", dir, ErrNotUnpacked, RecordFile)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("bundle %s: %w: %s: %v", dir, ErrNotUnpacked, RecordFile, err)
	}
	return &rec, nil
}

// addLayout remembers a layout images were unpacked from: gc keeps the
// snapshots of its images.
func (s *Store) addLayout(dir string) error {
	return s.updateLayouts(func(m map[string]bool) { m[dir] = true })
}

func (s *Store) updateLayouts(fn func(map[string]bool)) error {
	p := filepath.Join(s.root, LayoutsFile)
	lf, err := os.OpenFile(p+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	if err := flock(lf, unix.LOCK_EX); err != nil {
		return err
	}
	m := map[string]bool{}
	var list []string
	if b, err := os.ReadFile(p); err == nil {
		if err := json.Unmarshal(b, &list); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	for _, d := range list {
		m[d] = true
	}
	fn(m)
	list = list[:0]
	for d := range m {
		list = append(list, d)
	}
	sortStrings(list)
	b, _ := json.MarshalIndent(list, "", "\t")
	return fsx.WriteFile(p, b, 0o644)
}

// ErrInvalidIDMap means an id map cannot be a user namespace's mapping.
var ErrInvalidIDMap = errors.New("invalid id map")

// maxIDRanges is the most lines the kernel takes in a uid_map or gid_map.
const maxIDRanges = 340

// ValidateIDRanges checks that rs could be written to a uid_map or
// gid_map: no two ranges overlap on either side (a shifted ID must shift
// back to one image ID), and at most 340 of them.
func ValidateIDRanges(rs []IDRange) error {
	if len(rs) > maxIDRanges {
		return fmt.Errorf("%w: %d ranges, the kernel takes at most %d", ErrInvalidIDMap, len(rs), maxIDRanges)
	}
	overlap := func(a, b uint32, size, bsize uint32) bool {
		return uint64(a) < uint64(b)+uint64(bsize) && uint64(b) < uint64(a)+uint64(size)
	}
	for i, a := range rs {
		if a.Size == 0 {
			return fmt.Errorf("%w: range %d:%d:%d is empty", ErrInvalidIDMap, a.ContainerID, a.HostID, a.Size)
		}
		if uint64(a.ContainerID)+uint64(a.Size) > 1<<32 || uint64(a.HostID)+uint64(a.Size) > 1<<32 {
			return fmt.Errorf("%w: range %d:%d:%d overflows 32 bits", ErrInvalidIDMap, a.ContainerID, a.HostID, a.Size)
		}
		for _, b := range rs[:i] {
			if overlap(a.ContainerID, b.ContainerID, a.Size, b.Size) {
				return fmt.Errorf("%w: ranges %d:%d:%d and %d:%d:%d map the same container IDs", ErrInvalidIDMap, b.ContainerID, b.HostID, b.Size, a.ContainerID, a.HostID, a.Size)
			}
			if overlap(a.HostID, b.HostID, a.Size, b.Size) {
				return fmt.Errorf("%w: ranges %d:%d:%d and %d:%d:%d map to the same host IDs", ErrInvalidIDMap, b.ContainerID, b.HostID, b.Size, a.ContainerID, a.HostID, a.Size)
			}
		}
	}
	return nil
}

// Validate checks both halves of m with ValidateIDRanges.
func (m *IDMap) Validate() error {
	if m == nil {
		return nil
	}
	if err := ValidateIDRanges(m.UIDs); err != nil {
		return fmt.Errorf("uid map: %w", err)
	}
	if err := ValidateIDRanges(m.GIDs); err != nil {
		return fmt.Errorf("gid map: %w", err)
	}
	return nil
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
