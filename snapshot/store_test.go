package snapshot_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layer"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
)

var (
	needRoot      = layertest.NeedRoot
	lstat         = layertest.Lstat
	must          = layertest.Must
	buildStandard = layertest.BuildStandard
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

// ensureTar makes the snapshot of the uncompressed layer b on top of
// parent with driver d.
func ensureTar(t testing.TB, s *snapshot.Store, d snapshot.Driver, parent *snapshot.Info, b []byte) *snapshot.Info {
	t.Helper()
	id := digest.FromBytes(b)
	in, err := s.Ensure(context.Background(), d, parent, snapshot.Layer{Digest: id, DiffID: id, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func rebuilt(t testing.TB, in *snapshot.Info) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := in.Rebuild(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRebuildIdentical(t *testing.T) {
	needRoot(t)
	img, layers := buildStandard(t)
	s := openStore(t)
	l, err := layout.Open(img)
	must(t, err)
	defer l.Close()
	rec, err := bundle.Unpack(context.Background(), s, l, "v1", filepath.Join(t.TempDir(), "b"), bundle.UnpackOptions{})
	must(t, err)
	for i, id := range rec.Chain {
		in, err := s.Get(id.String())
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := in.Rebuild(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), layers[i]) {
			t.Fatalf("layer %d: rebuilt %d bytes differ from the original %d", i, buf.Len(), len(layers[i]))
		}
		if err := in.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// A changed file no longer verifies.
	top, _ := s.Get(rec.Chain[2].String())
	if err := os.WriteFile(filepath.Join(top.FS(), "app"), []byte("run you"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := top.Verify(context.Background()); err == nil {
		t.Fatal("verify of a changed snapshot succeeded")
	}
}

// TestFileListHandedOn: the file list Ensure hands to the next layer in
// memory gives the same lists on disk as reading each parent's back.
func TestFileListHandedOn(t *testing.T) {
	needRoot(t)
	_, l, img := layertest.OpenStandard(t)
	lists := make([][]layer.Files, 2)
	for run, reread := range []bool{false, true} {
		s := openStore(t)
		d, err := newDriver(vfs.Name, s)
		must(t, err)
		var parent *snapshot.Info
		for i, ld := range img.Manifest.Layers {
			in, err := s.Ensure(context.Background(), d, parent, snapshot.Layer{Digest: ld.Digest, DiffID: img.Config.RootFS.DiffIDs[i], Open: func() (io.ReadCloser, error) {
				return l.Blobs().Open(ld.Digest, ld.Size)
			}})
			must(t, err)
			if reread {
				in, err = s.Get(in.ID)
				must(t, err)
				if snapshot.HandedOn(in) {
					t.Fatal("a snapshot read from the store carries a file list")
				}
			} else if i > 0 && snapshot.HandedOn(parent) {
				t.Errorf("layer %d: the parent's list was not handed on", i)
			}
			files, err := in.ReadFiles()
			must(t, err)
			lists[run] = append(lists[run], files)
			parent = in
		}
	}
	if !reflect.DeepEqual(lists[0], lists[1]) {
		t.Error("file lists differ between handed-on and re-read parents")
	}
}

// newDriver opens the driver name for s's process, as an unpack does.
func newDriver(name string, s *snapshot.Store) (snapshot.Driver, error) {
	owners := s.Options().Owners()
	if name == overlay.Name {
		return overlay.NewDriver(s, owners, overlay.DriverOptions{Check: overlay.Check})
	}
	return vfs.New(s, owners)
}
