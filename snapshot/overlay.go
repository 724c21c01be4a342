package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/internal/idmap"
	"github.com/strata-oci/strata/overlay"
)

// OverlayDriver is the name of the overlay driver.
const OverlayDriver = "overlay"

// Files the overlay driver keeps.
const (
	// OverlayStoreFile, in the store root, records which xattr form
	// ("trusted" or "user") the store's overlay layers use: every layer
	// of a chain, and the upper directories above them, must agree.
	OverlayStoreFile = "overlay.json"
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
	// ErrNotOverlay means a bundle was not unpacked with the overlay
	// driver, so there is nothing to mount.
	ErrNotOverlay = errors.New("bundle does not use the overlay driver")
	// ErrXattrForm means the store's overlay layers use an xattr form
	// this process cannot write.
	ErrXattrForm = errors.New("store's overlay layers use another xattr form")
	// ErrIDMapNeedsRoot means an id map was asked for without the
	// privilege to make idmapped mounts (root in the initial user
	// namespace).
	ErrIDMapNeedsRoot = errors.New("overlay with an id map needs root (outside any user namespace)")
)

// OverlayFallback, when set, makes the "overlay" driver name fall back
// to vfs where overlay does not work: it is called with the reason (which
// wraps overlay.ErrUnsupported) and the vfs driver is returned instead,
// so the bundle records vfs. The CLI sets it to print a warning. When nil,
// NewDriver("overlay") fails with the reason.
var OverlayFallback func(reason error)

func init() {
	RegisterDriver(OverlayDriver, func(s *Store, owners *IDMap) (Driver, error) {
		o, err := newOverlay(s, owners)
		if errors.Is(err, overlay.ErrUnsupported) && OverlayFallback != nil {
			OverlayFallback(err)
			return newDriver(VFS, s, owners)
		}
		if err != nil {
			return nil, err
		}
		return o, nil
	})
}

// Overlay is the overlay snapshot driver: each layer is extracted once
// into its own snapshot, whiteouts in overlay's form, and a rootfs is an
// overlay mount of the chain with an upper and work directory in the
// bundle's state directory.
type Overlay struct {
	s *Store
	x overlay.Xattrs
	// owners is the mapping snapshots are written under, m what it
	// makes of image IDs for this process (ApplyOptions.Owners).
	owners, m *IDMap
}

type overlayStoreInfo struct {
	Xattrs string `json:"xattrs"`
}

// NewOverlay returns the overlay driver for s after checking, in the
// store's tmp directory, that overlay works there; when it does not, the
// error wraps overlay.ErrUnsupported with the reason, and callers fall
// back to vfs.
func NewOverlay(s *Store) (*Overlay, error) {
	return newOverlay(s, s.opts.owners())
}

func newOverlay(s *Store, owners *IDMap) (*Overlay, error) {
	o, err := openOverlay(s, owners, true)
	if err != nil {
		return nil, err
	}
	if err := overlay.Check(filepath.Join(s.Root(), TmpDir), o.x); err != nil {
		return nil, err
	}
	return o, nil
}

// openOverlay reads (or on first use decides and records) the store's
// xattr form without testing the kernel, for snapshots written under
// owners.
func openOverlay(s *Store, owners *IDMap, write bool) (*Overlay, error) {
	var m *IDMap
	if write {
		var err error
		if m, err = s.opts.writer(owners); err != nil {
			return nil, err
		}
	}
	// Only root in the initial user namespace can write trusted.*
	// xattrs; everyone else, root of a user namespace included, uses
	// user.* with userxattr.
	want := overlay.User
	if !s.opts.Rootless {
		want = overlay.Trusted
	}
	p := filepath.Join(s.Root(), OverlayStoreFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = recordForm(p, want)
	}
	if err != nil {
		return nil, fmt.Errorf("overlay driver: %w", err)
	}
	var info overlayStoreInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("overlay driver: %s: %w", p, err)
	}
	var x overlay.Xattrs
	switch info.Xattrs {
	case "trusted":
		x = overlay.Trusted
		if want != overlay.Trusted {
			return nil, fmt.Errorf("overlay driver: %w: store %s was made by root with trusted.overlay xattrs, which only root can use (use another --root)", ErrXattrForm, s.Root())
		}
	case "user":
		// Root can mount user-form layers with userxattr too.
		x = overlay.User
	default:
		return nil, fmt.Errorf("overlay driver: %s: unknown xattr form %q", p, info.Xattrs)
	}
	return &Overlay{s: s, x: x, owners: owners, m: m}, nil
}

// recordForm writes the store's form file if no other process has, and
// returns the file's content. The file appears whole (link of a complete
// temporary file), so a concurrent reader never sees it half-written.
func recordForm(p string, x overlay.Xattrs) ([]byte, error) {
	b, _ := json.Marshal(overlayStoreInfo{Xattrs: x.String()})
	f, err := os.CreateTemp(filepath.Dir(p), OverlayStoreFile+".tmp-")
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
func (o *Overlay) Name() string { return OverlayDriver }

// Owners is the ID mapping the driver's snapshots are written under.
func (o *Overlay) Owners() *IDMap { return o.owners }

// Xattrs is the xattr form of the store's layers and upper directories;
// commit reads upper directories with it.
func (o *Overlay) Xattrs() overlay.Xattrs { return o.x }

// Lowers lists the layer directories of the chain ending at top, topmost
// first, as overlay's lowerdir wants them; the chain's snapshots are kept
// under top's store key. A snapshot the vfs driver made holds the whole
// tree up to its layer, so it ends the list.
func (o *Overlay) Lowers(top *Info) ([]string, error) {
	var out []string
	for in := top; in != nil; {
		out = append(out, in.FS())
		if in.Driver != OverlayDriver || in.Parent == "" {
			break
		}
		next, err := o.s.get(in.key, in.Parent)
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
func (o *Overlay) PrepareLayer(dir string, parent *Info) (ApplyOptions, error) {
	x := o.x
	opts := ApplyOptions{
		Whiteouts:  WhiteoutConvert,
		Whiteouter: overlayWhiteouter{x},
		XattrName:  func(name string) string { return overlay.StoredXattr(name, x) },
	}
	// In a user namespace device nodes cannot be made, even with a
	// subordinate range mapped: the extractor's rootless mode writes
	// placeholders (the file list keeps what they stand for), gives the
	// owners the namespace maps and keeps the others in an xattr.
	opts.Rootless = o.s.opts.Rootless
	opts.Owners = o.m
	if parent != nil {
		low, err := o.Lowers(parent)
		if err != nil {
			return ApplyOptions{}, err
		}
		opts.Lower = low
	}
	return opts, nil
}

// overlayWhiteouter writes overlay whiteouts through directory
// descriptors (O_PATH, so xattrs go through the /proc/self/fd link, which
// setxattr follows to the directory).
type overlayWhiteouter struct{ x overlay.Xattrs }

func (w overlayWhiteouter) Whiteout(dirfd int, base string) error {
	if err := unix.Mknodat(dirfd, base, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create overlay whiteout %s: %w", base, err)
	}
	return nil
}

func (w overlayWhiteouter) Opaque(dirfd int) error {
	if err := unix.Setxattr("/proc/self/fd/"+strconv.Itoa(dirfd), w.x.Opaque(), []byte("y"), 0); err != nil {
		return fmt.Errorf("set %s: %w", w.x.Opaque(), err)
	}
	return nil
}

// Upper is the bundle's upper directory: what changed in the rootfs.
func (o *Overlay) Upper(c *Container) string { return filepath.Join(c.State(), UpperDir) }

// Work is the bundle's overlay work directory.
func (o *Overlay) Work(c *Container) string { return filepath.Join(c.State(), WorkDir) }

// CreateRootfs creates a fresh upper and work directory for c and mounts
// the rootfs. The upper directory's root takes the owner, mode and times
// of the top layer's root, since overlay shows the upper root's metadata
// for the rootfs's "/".
//
// With an id map the layers are mounted through idmapped clones (see
// Mount), so nothing is copied: every map shares the one set of
// snapshots. The upper directory then holds host IDs, as a vfs rootfs
// does, and commit shifts them back.
func (o *Overlay) CreateRootfs(c *Container) (err error) {
	top := c.Top()
	if top == nil {
		return fmt.Errorf("overlay rootfs in %s: image has no layers", c.Dir)
	}
	if !c.IDMap.Empty() {
		if c.Rootless || o.s.opts.Rootless {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, ErrIDMapNeedsRoot)
		}
		if err := c.IDMap.Validate(); err != nil {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
		}
		if err := checkMapped(top, c.IDMap); err != nil {
			return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
		}
	}
	upper, work := o.Upper(c), o.Work(c)
	for _, d := range []string{upper, work} {
		if _, err := os.Lstat(d); err == nil {
			return fmt.Errorf("overlay rootfs in %s: %s exists already", c.Dir, d)
		}
	}
	if err := os.MkdirAll(c.State(), 0o700); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	defer func() {
		if err != nil {
			_ = idmap.DetachAll(filepath.Join(c.State(), IDMapDir))
			_ = fsx.RemoveAll(upper)
			_ = fsx.RemoveAll(work)
		}
	}()
	if err := os.Mkdir(upper, 0o755); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	if err := copyRootMetaShifted(top.FS(), upper, c.IDMap); err != nil {
		return fmt.Errorf("overlay rootfs in %s: %w", c.Dir, err)
	}
	return o.Mount(c)
}

// copyRootMeta gives dst the owner, mode and times of src.
func copyRootMeta(src, dst string) error { return copyRootMetaShifted(src, dst, nil) }

// copyRootMetaShifted gives dst the owner (shifted by m to host IDs),
// mode and times of src.
func copyRootMetaShifted(src, dst string, m *IDMap) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "stat", Path: src, Err: err}
	}
	uid, gid, err := m.ToHost(int(st.Uid), int(st.Gid))
	if err != nil {
		return fmt.Errorf("owner of %s: %w", src, err)
	}
	if err := os.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return &os.PathError{Op: "chmod", Path: dst, Err: err}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "set times", Path: dst, Err: err}
	}
	return nil
}

// Mount mounts c's rootfs over its existing upper and work directories:
// after a reboot, or after Unmount. With an id map each layer is mounted
// through an idmapped clone of its directory: detached where the kernel
// allows (6.15+), else attached for the time of the mount under
// DIR/.strata/idmap.
func (o *Overlay) Mount(c *Container) (err error) {
	for _, d := range []string{o.Upper(c), o.Work(c)} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return fmt.Errorf("mount %s: missing overlay directory %s (was the bundle unpacked with the overlay driver?)", c.Rootfs(), d)
		}
	}
	if err := os.MkdirAll(c.Rootfs(), 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	mounted, err := overlay.IsMounted(c.Rootfs())
	if err != nil {
		return err
	}
	if mounted {
		return o.checkMounted(c)
	}
	low, err := o.Lowers(c.Top())
	if err != nil {
		return err
	}
	if c.IDMap.Empty() {
		return overlay.Mount(c.Rootfs(), overlay.Options{Lower: low, Upper: o.Upper(c), Work: o.Work(c), Xattrs: o.x})
	}
	if c.Rootless || o.s.opts.Rootless {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrIDMapNeedsRoot)
	}
	// Mount points of a killed earlier mount go first.
	attachDir := filepath.Join(c.State(), IDMapDir)
	if err := idmap.DetachAll(attachDir); err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	mounts, err := idmappedLayers(low, c.IDMap)
	if err != nil {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), err)
	}
	defer mounts.Close()
	lower := mounts.Paths()
	if !detachedLayers() {
		paths, detach, aerr := mounts.Attach(attachDir)
		if aerr != nil {
			return fmt.Errorf("mount %s: %w", c.Rootfs(), aerr)
		}
		// Overlay holds its own clones of its layers once mounted.
		defer func() {
			if derr := detach(); derr != nil && err == nil {
				err = fmt.Errorf("mount %s: %w", c.Rootfs(), derr)
			}
		}()
		lower = paths
	}
	if err := overlay.Mount(c.Rootfs(), overlay.Options{Lower: lower, Upper: o.Upper(c), Work: o.Work(c), Xattrs: o.x}); err != nil {
		return fmt.Errorf("%w (layers shifted by an id map are idmapped mounts, which overlay takes from Linux 5.19 on; --driver vfs copies instead)", err)
	}
	return nil
}

// checkMounted says what the overlay mounted on c's rootfs is:
// ErrAlreadyMounted when it is over c's own upper directory (or the kernel
// does not say), ErrMountedElsewhere when it is another.
func (o *Overlay) checkMounted(c *Container) error {
	upper, err := overlay.UpperDir(c.Rootfs())
	if err != nil || upper == "" {
		return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrAlreadyMounted)
	}
	mine, err1 := os.Stat(o.Upper(c))
	theirs, err2 := os.Stat(upper)
	if err1 == nil && err2 == nil && !os.SameFile(mine, theirs) {
		return fmt.Errorf("mount %s: %w (it is over %s)", c.Rootfs(), ErrMountedElsewhere, upper)
	}
	return fmt.Errorf("mount %s: %w", c.Rootfs(), ErrAlreadyMounted)
}

// detachedLayers says whether overlay takes detached idmapped mounts as
// layers; tests turn it off to try the attached form.
var detachedLayers = idmap.DetachedLayers

// Unmount unmounts c's rootfs and keeps the upper and work directories.
func (o *Overlay) Unmount(c *Container) error {
	return overlay.Unmount(c.Rootfs())
}

// RemoveRootfs unmounts c's rootfs if it is mounted and removes it with
// the upper and work directories.
func (o *Overlay) RemoveRootfs(c *Container) error {
	if err := overlay.Unmount(c.Rootfs()); err != nil && !errors.Is(err, overlay.ErrNotMounted) && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := idmap.DetachAll(filepath.Join(c.State(), IDMapDir)); err != nil {
		return fmt.Errorf("remove overlay rootfs of %s: %w", c.Dir, err)
	}
	for _, d := range []string{o.Upper(c), o.Work(c), c.Rootfs()} {
		if err := fsx.RemoveAll(d); err != nil {
			return fmt.Errorf("remove overlay rootfs of %s: %w", c.Dir, err)
		}
	}
	return nil
}

// OverlayBundle opens what mount and umount need for the bundle dir: its
// store (to Close when done; opened with o), the overlay driver and the
// Container.
func OverlayBundle(dir string, o StoreOptions) (*Store, *Overlay, *Container, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if err != nil {
		return nil, nil, nil, err
	}
	if rec.Driver != OverlayDriver {
		return nil, nil, nil, fmt.Errorf("bundle %s: %w (it uses %q; its rootfs is a plain directory)", dir, ErrNotOverlay, rec.Driver)
	}
	s, err := Open(rec.Store, o)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	owners, chain, err := s.bundleChain(rec, abs)
	if err == nil && len(chain) == 0 {
		err = fmt.Errorf("bundle %s: %s lists no layers", dir, RecordFile)
	}
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	// Mounting writes nothing in the layers: root may mount a user's.
	ov, err := openOverlay(s, owners, false)
	if err != nil {
		s.Close()
		return nil, nil, nil, err
	}
	return s, ov, &Container{Dir: abs, Chain: chain, Rootless: rec.Rootless, IDMap: rec.IDMap}, nil
}

// checkIDMap says whether this process can mount the store's layers
// shifted by m: it must be root outside any user namespace, and the
// store's file system must take idmapped mounts (tried on ROOT/tmp).
func (o *Overlay) checkIDMap(m *IDMap) error {
	if o.s.opts.Rootless {
		return ErrIDMapNeedsRoot
	}
	mounts, err := idmappedLayers([]string{filepath.Join(o.s.Root(), TmpDir)}, m)
	if err != nil {
		return fmt.Errorf("overlay with an id map in store %s: %w", o.s.Root(), err)
	}
	mounts.Close()
	return nil
}

// idmappedLayers clones each layer directory as an idmapped mount that
// shows the image's owners as m's host IDs. Closing the clones leaves a
// mounted overlay its own.
func idmappedLayers(dirs []string, m *IDMap) (*idmap.Mounts, error) {
	conv := func(rs []IDRange) []idmap.Range {
		out := make([]idmap.Range, len(rs))
		for i, r := range rs {
			out[i] = idmap.Range{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Size}
		}
		return out
	}
	return idmap.Clone(dirs, conv(m.UIDs), conv(m.GIDs))
}

// checkMapped makes sure every owner of the image up to top has a host
// ID under m: an idmapped mount would show the others as the overflow
// ID (nobody), and the vfs driver refuses them too.
func checkMapped(top *Info, m *IDMap) error {
	files, err := top.ReadFiles()
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", top.ID, err)
	}
	var bad *Entry
	var badErr error
	for _, e := range files {
		if _, _, err := m.ToHost(e.UID, e.GID); err != nil && (bad == nil || e.Path < bad.Path) {
			bad, badErr = e, err
		}
	}
	if bad != nil {
		return fmt.Errorf("%s is owned by %d:%d: %w", path.Join("/", bad.Path), bad.UID, bad.GID, badErr)
	}
	return nil
}
