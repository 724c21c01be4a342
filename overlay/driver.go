package overlay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
	"golang.org/x/sys/unix"
)

// Name is the name of the overlay driver.
const Name = "overlay"

// Files the overlay driver keeps.
const (
	// storeFile, in the store root, records which xattr form
	// ("trusted" or "user") the store's overlay layers use: every layer
	// of a chain, and the upper directories above them, must agree.
	storeFile = "overlay.json"
	// UpperDir and WorkDir are the bundle's writable overlay pair, in
	// the bundle's private state directory.
	UpperDir = "upper"
	WorkDir  = "work"
	// IDMapDir, in the bundle's state directory, holds the idmapped
	// layers of a mapped bundle while its rootfs is being mounted, on
	// kernels before 6.15; it is empty, or absent, otherwise.
	IDMapDir = "idmap"
)

// Errors of the overlay driver.
var (
	// ErrAlreadyMounted means a bundle's rootfs is mounted already, over
	// the bundle's own upper directory: there is nothing to do.
	ErrAlreadyMounted = errors.New("rootfs is already mounted")
	// ErrMountedElsewhere means an overlay is mounted on a bundle's
	// rootfs over another upper directory than the bundle's.
	ErrMountedElsewhere = errors.New("rootfs is mounted, but not over this bundle's upper directory")
	// ErrXattrForm means the store's overlay layers use an xattr form
	// this process cannot write.
	ErrXattrForm = errors.New("store's overlay layers use another xattr form")
	// ErrIDMapNeedsRoot means an id map was asked for without the
	// privilege to make idmapped mounts (root in the initial user
	// namespace).
	ErrIDMapNeedsRoot = errors.New("overlay with an id map needs root (outside any user namespace)")
	// ErrIDMappedLayers means overlay refused layers shifted by an id
	// map (idmapped mounts): the kernel is older than 5.19, or the file
	// system cannot be idmapped.
	ErrIDMappedLayers = errors.New("overlay refused the idmapped layers")
	// ErrRemount means a commit moved a mounted overlay bundle onto its
	// new image but could not mount it again: the bundle is whole, and
	// mounting it again brings the rootfs back.
	ErrRemount = errors.New("the bundle's rootfs was not mounted again")
)

// Driver is the overlay snapshot driver: each layer is extracted once
// into its own snapshot, whiteouts in overlay's form, and a rootfs is an
// overlay mount of the chain with an upper and work directory in the
// bundle's state directory.
type Driver struct {
	s *snapshot.Store
	x Xattrs
	// owners is the mapping snapshots are written under, m what it
	// makes of image IDs for this process (layer.ApplyOptions.Owners).
	owners, m *ids.Map
}

type storeInfo struct {
	Xattrs string `json:"xattrs"`
}

// DriverOptions say what NewDriver is opened for.
type DriverOptions struct {
	// Check, when set, first tries overlay in the store's tmp directory
	// (Check, or a test's stand-in): a new bundle's. When overlay does
	// not work there the error wraps ErrUnsupported with the reason, and
	// callers may fall back to vfs. An existing bundle's overlay works
	// already: no trial.
	Check func(dir string, x Xattrs) error
	// ReadOnly opens the driver to mount an existing bundle: nothing is
	// written into the layers, so root may mount a user's.
	ReadOnly bool
}

// NewDriver returns the overlay driver for the snapshots of s written
// under owners (see snapshot.Info.Owners). It reads (or on first use
// decides and records) the store's xattr form.
func NewDriver(s *snapshot.Store, owners *ids.Map, o DriverOptions) (*Driver, error) {
	d, err := openDriver(s, owners, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	if o.Check != nil {
		if err := o.Check(filepath.Join(s.Root(), snapshot.TmpDir), d.x); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// openDriver reads (or on first use decides and records) the store's
// xattr form without testing the kernel, for snapshots written under
// owners.
func openDriver(s *snapshot.Store, owners *ids.Map, readOnly bool) (*Driver, error) {
	var m *ids.Map
	if !readOnly {
		var err error
		if m, err = s.Options().Writer(owners); err != nil {
			return nil, err
		}
	}
	// Only root in the initial user namespace can write trusted.*
	// xattrs; everyone else, root of a user namespace included, uses
	// user.* with userxattr.
	want := User
	if !s.Options().Rootless {
		want = Trusted
	}
	p := filepath.Join(s.Root(), storeFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = recordForm(p, want)
	}
	if err != nil {
		return nil, fmt.Errorf("overlay driver: %w", err)
	}
	var info storeInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("overlay driver: %s: %w", p, err)
	}
	var x Xattrs
	switch info.Xattrs {
	case "trusted":
		x = Trusted
		if want != Trusted {
			return nil, fmt.Errorf("overlay driver: %w: store %s was made by root with trusted.overlay xattrs, which only root can use", ErrXattrForm, s.Root())
		}
	case "user":
		// Root can mount user-form layers with userxattr too.
		x = User
	default:
		return nil, fmt.Errorf("overlay driver: %s: unknown xattr form %q", p, info.Xattrs)
	}
	return &Driver{s: s, x: x, owners: owners, m: m}, nil
}

// recordForm writes the store's form file if no other process has, and
// returns the file's content. The file appears whole (link of a complete
// temporary file), so a concurrent reader never sees it half-written.
func recordForm(p string, x Xattrs) ([]byte, error) {
	b, _ := json.Marshal(storeInfo{Xattrs: x.String()})
	f, err := os.CreateTemp(filepath.Dir(p), storeFile+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("record xattr form: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		return nil, fmt.Errorf("record xattr form: %w", err)
	}
	if err := os.Link(f.Name(), p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process decided first.
			return os.ReadFile(p)
		}
		return nil, fmt.Errorf("record xattr form: %w", err)
	}
	return b, nil
}

// Name is "overlay".
func (o *Driver) Name() string { return Name }

// Owners is the ID mapping the driver's snapshots are written under.
func (o *Driver) Owners() *ids.Map { return o.owners }

// Stacked is true: a snapshot holds its layer alone, and the layers
// below are its rootfs's lower directories.
func (o *Driver) Stacked() bool { return true }

// Usage walks the snapshot's directory: it holds the layer alone.
func (o *Driver) Usage(fsDir string, _ layer.Files) (int64, int64, error) {
	return diskUsage(fsDir)
}

// snapshot.NeedsNamespace is true: a rootless overlay mount lives in the user
// namespace it was made in.
func (o *Driver) NeedsNamespace() bool { return true }

// StreamRootfs: the rootfs is a mount of the snapshots, made once they
// are all there.
func (o *Driver) StreamRootfs(context.Context, *snapshot.Store, string, *ids.Map, int) snapshot.RootfsStream {
	return nil
}

// lowers lists the layer directories of the chain ending at top, topmost
// first, as overlay's lowerdir wants them; the chain's snapshots are kept
// under top's store key. A snapshot the vfs driver made holds the whole
// tree up to its layer, so it ends the list.
func (o *Driver) lowers(top *snapshot.Info) ([]string, error) {
	var out []string
	for in := top; in != nil; {
		out = append(out, in.FS())
		if in.Driver != Name || in.Parent == "" {
			break
		}
		next, err := o.s.Get(in.Key() + "/" + in.Parent.Encoded())
		if err != nil {
			return nil, fmt.Errorf("layers below snapshot %s: %w", in.ID, err)
		}
		in = next
	}
	return out, nil
}

// PrepareLayer leaves dir empty: an overlay snapshot holds its layer
// alone. Whiteouts are converted, and the extractor copies up hardlink
// targets and implicit directories' metadata from the chain below.
func (o *Driver) PrepareLayer(_ context.Context, dir string, parent *snapshot.Info) (layer.ApplyOptions, error) {
	x := o.x
	opts := layer.ApplyOptions{
		Whiteouts:  layer.WhiteoutConvert,
		Whiteouter: whiteouter{x},
		XattrName:  func(name string) string { return StoredXattr(name, x) },
	}
	// In a user namespace device nodes cannot be made, even with a
	// subordinate range mapped: the extractor's rootless mode writes
	// placeholders (the file list keeps what they stand for), gives the
	// owners the namespace maps and keeps the others in an xattr.
	opts.Rootless = o.s.Options().Rootless
	opts.Owners = o.m
	opts.UID, opts.GID = o.s.Options().UID, o.s.Options().GID
	if parent != nil {
		low, err := o.lowers(parent)
		if err != nil {
			return layer.ApplyOptions{}, err
		}
		opts.Lower = low
	}
	return opts, nil
}

// whiteouter writes overlay whiteouts through directory
// descriptors (O_PATH, so xattrs go through the /proc/self/fd link, which
// setxattr follows to the directory).
type whiteouter struct{ x Xattrs }

func (w whiteouter) Whiteout(dirfd int, base string) error {
	if err := unix.Mknodat(dirfd, base, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create overlay whiteout %s: %w", base, err)
	}
	return nil
}

func (w whiteouter) Opaque(dirfd int) error {
	if err := unix.Setxattr("/proc/self/fd/"+strconv.Itoa(dirfd), w.x.Opaque(), []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", w.x.Opaque(), err)
	}
	return nil
}
