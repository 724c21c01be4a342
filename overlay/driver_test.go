package overlay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/testenv"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

var (
	lstat             = layertest.Lstat
	must              = layertest.Must
	describeTree      = layertest.DescribeTree
	withoutLinkCounts = layertest.WithoutLinkCounts
	diffTrees         = layertest.DiffTrees
)

func openStore(t *testing.T) *snapshot.Store {
	t.Helper()
	s, err := snapshot.Open(filepath.Join(t.TempDir(), "store"), snapshot.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fakeSnapshot writes a snapshot's meta.json and empty fs/.
func fakeSnapshot(t *testing.T, s *snapshot.Store, name, driver string, parent digest.Digest) *snapshot.Info {
	t.Helper()
	id := digest.FromString(name)
	in := &snapshot.Info{ID: id.Encoded(), ChainID: id, Parent: parent, DiffID: id, Driver: driver}
	// All under the overlay driver's key: lowers follows parents there.
	dir := filepath.Join(s.Root(), snapshot.SnapshotsDir, Name, id.Encoded())
	if err := os.MkdirAll(filepath.Join(dir, snapshot.FSDir), 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(in)
	if err := os.WriteFile(filepath.Join(dir, snapshot.MetaFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(Name + "/" + id.Encoded())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestOverlayLowers(t *testing.T) {
	s := openStore(t)
	o := &Driver{s: s, x: Trusted}
	base := fakeSnapshot(t, s, "base", Name, "")
	mid := fakeSnapshot(t, s, "mid", Name, base.ChainID)
	top := fakeSnapshot(t, s, "top", Name, mid.ChainID)
	full := fakeSnapshot(t, s, "full", "vfs", digest.FromString("never-read"))
	onFull := fakeSnapshot(t, s, "on-full", Name, full.ChainID)
	orphan := fakeSnapshot(t, s, "orphan", Name, digest.FromString("missing"))
	tests := []struct {
		name string
		top  *snapshot.Info
		want []*snapshot.Info
		err  error
	}{
		{"chain", top, []*snapshot.Info{top, mid, base}, nil},
		{"base", base, []*snapshot.Info{base}, nil},
		// A vfs snapshot holds the whole tree below: it ends the list.
		{"on vfs", onFull, []*snapshot.Info{onFull, full}, nil},
		{"missing parent", orphan, nil, snapshot.ErrNotFound},
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
		want    Xattrs
		bad     bool
	}{
		{name: "new store", want: Trusted},
		{name: "trusted", content: `{"xattrs":"trusted"}`, want: Trusted},
		{name: "user store used by root", content: `{"xattrs":"user"}`, want: User},
		{name: "unknown form", content: `{"xattrs":"sideways"}`, bad: true},
		{name: "garbage", content: `{`, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			p := filepath.Join(s.Root(), storeFile)
			if tc.content != "" {
				if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			o, err := NewDriver(s, s.Options().Owners(), DriverOptions{Check: Check})
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
				t.Errorf("%s holds %s", storeFile, b)
			}
			if ents, _ := os.ReadDir(filepath.Join(s.Root(), snapshot.TmpDir)); len(ents) != 0 {
				t.Errorf("the overlay check left %d entries in tmp", len(ents))
			}
		})
	}
}

func TestOverlayWhiteouter(t *testing.T) {
	needRoot(t)
	for _, x := range []Xattrs{Trusted, User} {
		dir := t.TempDir()
		fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		w := whiteouter{x}
		if err := w.Whiteout(fd, "gone"); err != nil {
			t.Fatal(err)
		}
		if err := w.Opaque(fd); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fi, err := os.Lstat(filepath.Join(dir, "gone"))
		if err != nil || !IsWhiteout(fi) {
			t.Errorf("%v: gone is not a whiteout: %v", x, err)
		}
		if ok, err := IsOpaque(dir, x); !ok || err != nil {
			t.Errorf("%v: directory not opaque: %v", x, err)
		}
	}
}

// TestOverlayStoreFormConcurrent: processes deciding the form at once
// all read a whole file and agree.
func TestOverlayStoreFormConcurrent(t *testing.T) {
	s := openStore(t)
	errs := make(chan error, 16)
	forms := make(chan Xattrs, 16)
	for i := 0; i < 16; i++ {
		go func() {
			o, err := openDriver(s, &ids.Map{}, false)
			if err != nil {
				errs <- err
				return
			}
			forms <- o.x
		}()
	}
	var first Xattrs
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

// FuzzDiffOverlay runs random changes through an overlay mount and checks
// that the diff of the upper directory, applied on the lower tree, gives
// what the mount showed.
func FuzzDiffOverlay(f *testing.F) {
	testenv.RequireRoot(f)
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{1, 4, 1, 5, 2, 4, 0, 37, 3, 34, 6, 70, 9, 3})
	f.Add([]byte{2, 11, 0, 11, 1, 2, 2, 2, 0, 35, 8, 6, 7, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 40 {
			ops = ops[:40]
		}
		base := layertest.Tar(
			layertest.Dir("a", 0o755), layertest.File("a/f", "f", 0o644),
			layertest.File("a/g", "g", 0o644), layertest.Hardlink("a/h", "a/g"),
			layertest.Dir("b", 0o755), layertest.Dir("b/c", 0o700), layertest.File("b/c/f", "deep", 0o600),
			layertest.Symlink("l", "a/f"), layertest.File("t", "t", 0o644))
		snap, files := applyBase(t, base)
		dir := t.TempDir()
		upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
		for _, d := range []string{upper, work, merged} {
			must(t, os.Mkdir(d, 0o755))
		}
		must(t, copyRootMetaShifted(snap, upper, nil))
		must(t, Mount(merged, Options{Lower: []string{snap}, Upper: upper, Work: work, Xattrs: Trusted}))
		mounted := true
		defer func() {
			if mounted {
				_ = Unmount(merged)
			}
		}()
		names := []string{"a", "a/f", "a/g", "a/h", "b", "b/c", "b/c/f", "l", "t", "n", "a/n", "b/n"}
		for i := 0; i+1 < len(ops); i += 2 {
			p := filepath.Join(merged, names[int(ops[i+1])%len(names)])
			q := filepath.Join(merged, names[int(ops[i+1]/16)%len(names)])
			switch ops[i] % 10 {
			case 0:
				_ = os.WriteFile(p, []byte(fmt.Sprint("w", i)), 0o644)
			case 1:
				_ = os.RemoveAll(p)
			case 2:
				_ = os.Mkdir(p, 0o750)
			case 3:
				_ = os.Link(q, p)
			case 4:
				_ = os.Chmod(p, os.FileMode(0o600+uint32(i)%0o100))
			case 5:
				_ = os.Symlink(fmt.Sprint("target", i), p)
			case 6:
				_ = os.Rename(q, p)
			case 7:
				_ = os.Lchown(p, i, i+1)
			case 8:
				_ = unix.Lsetxattr(p, "user.fuzz", []byte{byte(i)}, 0)
			case 9:
				// A directory removed and made again: overlay makes it
				// opaque.
				if os.RemoveAll(p) == nil {
					_ = os.Mkdir(p, 0o711)
					_ = os.WriteFile(filepath.Join(p, "new"), []byte("n"), 0o644)
				}
			}
		}
		want := withoutLinkCounts(describeTree(t, merged))
		must(t, Unmount(merged))
		mounted = false
		d, err := diffOverlay(upper, Trusted, nil, layer.Ownership{})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		must(t, d.WriteTar(&buf, layer.WriteOptions{}))
		// The parent again, then the diff on it.
		next, _ := applyBase(t, base)
		if err := layer.Apply(context.Background(), next, &buf, layer.ApplyOptions{}, files.Clone()); err != nil {
			t.Fatalf("apply the diff %v: %v", d.Paths(), err)
		}
		diffTrees(t, "overlay mount", want, "lower+diff", withoutLinkCounts(describeTree(t, next)))
	})
}

// applyBase extracts the layer base into a new directory, as a base
// snapshot, and returns it with its file list.
func applyBase(t testing.TB, base []byte) (string, layer.Files) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "snap")
	must(t, os.Mkdir(dir, 0o755))
	files := layer.Files{}
	must(t, layer.Apply(context.Background(), dir, bytes.NewReader(base), layer.ApplyOptions{}, files))
	return dir, files
}
