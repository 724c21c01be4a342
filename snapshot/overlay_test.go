package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
)

// unmountLater unmounts a bundle's rootfs when the test ends.
func unmountLater(t *testing.T, bundle string) {
	t.Cleanup(func() {
		rootfs := filepath.Join(bundle, RootfsDir)
		if ok, _ := overlay.IsMounted(rootfs); ok {
			if err := overlay.Unmount(rootfs); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

func TestOverlayDriverRoundTrip(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img, _ := buildStandard(t)
	bundle := filepath.Join(t.TempDir(), "bundle")
	unmountLater(t, bundle)
	rec := unpack(t, s, img, bundle, UnpackOptions{Driver: OverlayDriver})
	if rec.Driver != OverlayDriver || len(rec.Chain) != 3 {
		t.Fatalf("record: driver %q, %d layers", rec.Driver, len(rec.Chain))
	}
	rootfs := filepath.Join(bundle, RootfsDir)
	if ok, err := overlay.IsMounted(rootfs); !ok || err != nil {
		t.Fatalf("rootfs not mounted after unpack: %v", err)
	}
	o, c := overlayBundle(t, bundle)
	if o.x != overlay.Trusted {
		t.Errorf("root's store uses %v xattrs", o.x)
	}
	// The rootfs's "/" shows the top layer's root, not a fresh directory.
	top, upper := lstat(t, c.Top().FS()), lstat(t, o.upper(c))
	if top.Mode != upper.Mode || top.Uid != upper.Uid || top.Gid != upper.Gid || top.Mtim != upper.Mtim {
		t.Errorf("upper root %o %d:%d %v, top layer root %o %d:%d %v", upper.Mode, upper.Uid, upper.Gid, upper.Mtim, top.Mode, top.Uid, top.Gid, top.Mtim)
	}
	// Each snapshot holds its own layer only.
	if _, err := os.Lstat(filepath.Join(c.Top().FS(), "etc", "passwd")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("top snapshot holds a base layer file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "note"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(c); err != nil {
		t.Fatal(err)
	}
	if err := o.Unmount(c); !errors.Is(err, overlay.ErrNotMounted) {
		t.Errorf("second Unmount: %v, want ErrNotMounted", err)
	}
	if err := o.Mount(c); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "note")); err != nil || string(b) != "kept" {
		t.Errorf("after remount note = %q %v", b, err)
	}
	if err := o.Mount(c); !errors.Is(err, ErrAlreadyMounted) {
		t.Errorf("second Mount: %v, want ErrAlreadyMounted", err)
	}
	// Another overlay on the rootfs is not the bundle's mount.
	if err := o.Unmount(c); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	for _, d := range []string{"up", "work"} {
		must(t, os.Mkdir(filepath.Join(other, d), 0o755))
	}
	must(t, overlay.Mount(rootfs, overlay.Options{Lower: []string{c.Top().FS()}, Upper: filepath.Join(other, "up"), Work: filepath.Join(other, "work")}))
	if err := o.Mount(c); !errors.Is(err, ErrMountedElsewhere) || errors.Is(err, ErrAlreadyMounted) {
		t.Errorf("Mount over another overlay: %v, want ErrMountedElsewhere", err)
	}
	if err := o.RemoveRootfs(c); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{rootfs, o.upper(c), o.work(c)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("RemoveRootfs left %s: %v", p, err)
		}
	}
	if err := o.Mount(c); err == nil || !strings.Contains(err.Error(), "missing overlay directory") {
		t.Errorf("Mount without upper: %v", err)
	}
}

// fakeSnapshot writes a snapshot's meta.json and empty fs/.
func fakeSnapshot(t *testing.T, s *Store, name, driver string, parent digest.Digest) *Info {
	t.Helper()
	id := digest.FromString(name)
	in := &Info{ID: id.Encoded(), ChainID: id, Parent: parent, DiffID: id, Driver: driver, key: OverlayDriver}
	// All under the overlay driver's key: Lowers follows parents there.
	dir := s.dir(OverlayDriver, id)
	if err := os.MkdirAll(filepath.Join(dir, FSDir), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(in)
	if err := os.WriteFile(filepath.Join(dir, MetaFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	in.Dir = dir
	return in
}

func TestOverlayLowers(t *testing.T) {
	s := openStore(t)
	o := &Overlay{s: s, x: overlay.Trusted}
	base := fakeSnapshot(t, s, "base", OverlayDriver, "")
	mid := fakeSnapshot(t, s, "mid", OverlayDriver, base.ChainID)
	top := fakeSnapshot(t, s, "top", OverlayDriver, mid.ChainID)
	full := fakeSnapshot(t, s, "full", VFS, digest.FromString("never-read"))
	onFull := fakeSnapshot(t, s, "on-full", OverlayDriver, full.ChainID)
	orphan := fakeSnapshot(t, s, "orphan", OverlayDriver, digest.FromString("missing"))
	tests := []struct {
		name string
		top  *Info
		want []*Info
		err  error
	}{
		{"chain", top, []*Info{top, mid, base}, nil},
		{"base", base, []*Info{base}, nil},
		// A vfs snapshot holds the whole tree below: it ends the list.
		{"on vfs", onFull, []*Info{onFull, full}, nil},
		{"missing parent", orphan, nil, ErrNotFound},
	}
	for _, tc := range tests {
		got, err := o.lowers(tc.top)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			}
			continue
		}
		var want []string
		for _, in := range tc.want {
			want = append(want, in.FS())
		}
		if err != nil || strings.Join(got, ":") != strings.Join(want, ":") {
			t.Errorf("%s: %v %v, want %v", tc.name, got, err, want)
		}
	}
	opts, err := o.PrepareLayer(context.Background(), t.TempDir(), top)
	if err != nil || opts.Whiteouts != layer.WhiteoutConvert || opts.Whiteouter == nil || len(opts.Lower) != 3 {
		t.Errorf("PrepareLayer: %+v %v", opts, err)
	}
}

func TestOverlayStoreForm(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name    string
		content string // "" : no file
		want    overlay.Xattrs
		bad     bool
	}{
		{name: "new store", want: overlay.Trusted},
		{name: "trusted", content: `{"xattrs":"trusted"}`, want: overlay.Trusted},
		{name: "user store used by root", content: `{"xattrs":"user"}`, want: overlay.User},
		{name: "unknown form", content: `{"xattrs":"sideways"}`, bad: true},
		{name: "garbage", content: `{`, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			p := filepath.Join(s.Root(), OverlayStoreFile)
			if tc.content != "" {
				if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o, err := newOverlay(s, s.opts.owners())
			if tc.bad {
				if err == nil {
					t.Fatal("accepted a bad form file")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.x != tc.want {
				t.Errorf("form %v, want %v", o.x, tc.want)
			}
			b, _ := os.ReadFile(p)
			if !strings.Contains(string(b), tc.want.String()) {
				t.Errorf("%s holds %s", OverlayStoreFile, b)
			}
			if ents, _ := os.ReadDir(filepath.Join(s.Root(), TmpDir)); len(ents) != 0 {
				t.Errorf("the overlay check left %d entries in tmp", len(ents))
			}
		})
	}
}

func TestOverlayFallbackHook(t *testing.T) {
	s := openStore(t)
	saved := checkOverlay
	t.Cleanup(func() { checkOverlay = saved })
	checkOverlay = func(string, overlay.Xattrs) error {
		return fmt.Errorf("%w: refused by the test", overlay.ErrUnsupported)
	}
	if _, err := s.unpackDriver(UnpackOptions{Driver: OverlayDriver}); !errors.Is(err, overlay.ErrUnsupported) {
		t.Errorf("without a fallback: %v, want ErrUnsupported", err)
	}
	var reason error
	d, err := s.unpackDriver(UnpackOptions{Driver: OverlayDriver, OnFallback: func(err error) { reason = err }})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != VFS {
		t.Errorf("fallback driver is %s", d.Name())
	}
	if !errors.Is(reason, overlay.ErrUnsupported) || !strings.Contains(reason.Error(), "refused by the test") {
		t.Errorf("fallback reason %v", reason)
	}
}

func TestOverlayBundleErrors(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	if _, err := OpenBundle(dir, StoreOptions{}); !errors.Is(err, ErrNotUnpacked) {
		t.Errorf("no record: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(`{"driver":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBundle(dir, StoreOptions{}); !errors.Is(err, ErrNotUnpacked) {
		t.Errorf("garbage: %v, want ErrNotUnpacked", err)
	}
	store := filepath.Join(t.TempDir(), "store")
	rec := `{"driver":"overlay","store":"` + store + `","chain":["sha256:` + strings.Repeat("b", 64) + `"]}`
	if err := os.WriteFile(filepath.Join(dir, RecordFile), []byte(rec), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBundle(dir, StoreOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing snapshot: %v, want ErrNotFound", err)
	}
	// A vfs bundle has nothing to mount.
	img, _ := buildStandard(t)
	vb := filepath.Join(t.TempDir(), "vfs")
	unpack(t, openStore(t), img, vb, UnpackOptions{})
	b, err := OpenBundle(vb, StoreOptions{})
	must(t, err)
	defer b.Close()
	if err := b.Mount(); !errors.Is(err, ErrNoMount) {
		t.Errorf("vfs bundle: %v, want ErrNoMount", err)
	}
	if err := b.Unmount(); !errors.Is(err, ErrNoMount) {
		t.Errorf("vfs bundle: %v, want ErrNoMount", err)
	}
}

// overlayBundle opens the overlay bundle dir as mount does and returns
// its driver and container; the store closes with the test.
func overlayBundle(t *testing.T, dir string) (*Overlay, *Container) {
	t.Helper()
	b, err := OpenBundle(dir, StoreOptions{})
	must(t, err)
	t.Cleanup(func() { b.Close() })
	return b.d.(*Overlay), b.c
}

func TestOverlayWhiteouter(t *testing.T) {
	needRoot(t)
	for _, x := range []overlay.Xattrs{overlay.Trusted, overlay.User} {
		dir := t.TempDir()
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		w := overlayWhiteouter{x}
		if err := w.Whiteout(fd, "gone"); err != nil {
			t.Fatal(err)
		}
		if err := w.Opaque(fd); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fi, err := os.Lstat(filepath.Join(dir, "gone"))
		if err != nil || !overlay.IsWhiteout(fi) {
			t.Errorf("%v: gone is not a whiteout: %v", x, err)
		}
		if ok, err := overlay.IsOpaque(dir, x); !ok || err != nil {
			t.Errorf("%v: directory not opaque: %v", x, err)
		}
	}
}

// TestOverlayStoreFormConcurrent: processes deciding the form at once
// all read a whole file and agree.
func TestOverlayStoreFormConcurrent(t *testing.T) {
	s := openStore(t)
	errs := make(chan error, 16)
	forms := make(chan overlay.Xattrs, 16)
	for i := 0; i < 16; i++ {
		go func() {
			o, err := openOverlay(s, &ids.Map{}, true)
			if err != nil {
				errs <- err
				return
			}
			forms <- o.x
		}()
	}
	var first overlay.Xattrs
	for i := 0; i < 16; i++ {
		select {
		case err := <-errs:
			t.Fatal(err)
		case x := <-forms:
			if i == 0 {
				first = x
			} else if x != first {
				t.Fatalf("forms disagree: %v and %v", first, x)
			}
		}
	}
	ents, _ := os.ReadDir(s.Root())
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("left %s behind", e.Name())
		}
	}
}
