package bundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
	"github.com/strata-oci/strata/snapshot/vfs"
	"golang.org/x/sys/unix"
)

func TestCommitEmpty(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, img, bundle, UnpackOptions{})
	res := commitBundle(t, bundle, img, "v2", CommitOptions{Comment: "nothing", CreatedBy: "test"})
	if res.Layer != nil || res.Entries != 0 {
		t.Fatalf("empty commit wrote a layer: %+v", res.Layer)
	}
	parent := readImage(t, img, "v1")
	got := readImage(t, img, "v2")
	if len(got.Manifest.Layers) != 3 || len(got.Config.RootFS.DiffIDs) != 3 {
		t.Fatalf("layers %d, diffIDs %d, want 3", len(got.Manifest.Layers), len(got.Config.RootFS.DiffIDs))
	}
	h := got.Config.History
	if len(h) != len(parent.Config.History)+1 || !h[len(h)-1].EmptyLayer || h[len(h)-1].Comment != "nothing" || h[len(h)-1].CreatedBy != "test" {
		t.Fatalf("history: %+v", h)
	}
	rec, err := ReadRecord(bundle)
	must(t, err)
	if rec.Manifest != res.Manifest.Digest || len(rec.Chain) != 3 || rec.Ref != "v2" {
		t.Fatalf("record after commit: %+v", rec)
	}
}

func TestCommitConfig(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, img, bundle, UnpackOptions{})
	must(t, os.WriteFile(filepath.Join(bundle, snapshot.RootfsDir, "x"), []byte("x"), 0o644))
	ts := time.Unix(1700000000, 0).UTC()
	res := commitBundle(t, bundle, img, "", CommitOptions{
		Author: "ann", Comment: "c", CreatedBy: "make x", Timestamp: &ts,
		Compression: layout.CompressionZstd,
		Edit:        func(c *layout.Config) error { return c.SetRuntime("Cmd", []string{"/app"}) },
	})
	if res.Layer == nil || res.Layer.Descriptor.MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Fatalf("layer: %+v", res.Layer)
	}
	l, err := layout.Open(img)
	must(t, err)
	defer l.Close()
	got, err := l.ReadImage(res.Manifest)
	must(t, err)
	c := got.Config
	if c.Author != "ann" || c.Created == nil || !c.Created.Equal(ts) || len(c.Config.Cmd) != 1 || c.Config.Cmd[0] != "/app" || c.Config.User != "alice" {
		t.Fatalf("config: %+v", c)
	}
	last := c.History[len(c.History)-1]
	if last.EmptyLayer || last.Author != "ann" || last.Comment != "c" || last.CreatedBy != "make x" || !last.Created.Equal(ts) {
		t.Fatalf("history entry: %+v", last)
	}
	if c.RootFS.DiffIDs[len(c.RootFS.DiffIDs)-1] != res.Layer.DiffID {
		t.Fatalf("diffIDs %v do not end with %s", c.RootFS.DiffIDs, res.Layer.DiffID)
	}
	// Untagged: listed by digest.
	idx, err := l.Index()
	must(t, err)
	found := false
	for _, m := range idx.Manifests {
		found = found || (m.Digest == res.Manifest.Digest && m.Annotations[layout.AnnotationRefName] == "")
	}
	if !found {
		t.Fatalf("untagged manifest %s not in index", res.Manifest.Digest)
	}
}

// TestCommitChanges commits every kind of change and checks that the new
// image unpacks to exactly the changed tree, that the bundle keeps
// working on it (a second commit sees nothing new), and that commits
// stack.
func TestCommitChanges(t *testing.T) {
	needRoot(t)
	for _, driver := range []string{vfs.Name, overlay.Name} {
		t.Run(driver, func(t *testing.T) {
			img, _ := buildStandard(t)
			s := openStore(t)
			// Fresh unpacks use vfs, in a store of their own.
			vs := openStore(t)
			bundle := filepath.Join(t.TempDir(), "b")
			unpack(t, s, img, bundle, UnpackOptions{Driver: driver})
			rootfs := filepath.Join(bundle, snapshot.RootfsDir)
			if driver == overlay.Name {
				t.Cleanup(func() { _ = overlay.Unmount(rootfs) })
			}
			desc := func(root string) map[string]string {
				if driver == overlay.Name {
					return withoutLinkCounts(describeTree(t, root))
				}
				return describeTree(t, root)
			}
			changeRootfs(t, rootfs)
			want := desc(rootfs)
			pending, err := bundleDiff(context.Background(), bundle, snapshot.StoreOptions{})
			must(t, err)
			if pending.Empty() {
				t.Fatal("bundleDiff sees no change")
			}
			res := commitBundle(t, bundle, img, "v2", CommitOptions{})
			if res.Layer == nil {
				t.Fatal("no layer for a changed rootfs")
			}
			if driver == overlay.Name {
				ents, err := os.ReadDir(filepath.Join(bundle, snapshot.BundleState, overlay.UpperDir))
				must(t, err)
				if len(ents) != 0 {
					t.Fatalf("upper directory not fresh after commit: %d entries", len(ents))
				}
				if ok, _ := overlay.IsMounted(rootfs); !ok {
					t.Fatal("rootfs not remounted after commit")
				}
			}
			diffTrees(t, "changed", want, "bundle after commit", desc(rootfs))
			fresh := filepath.Join(t.TempDir(), "fresh")
			unpackRef(t, vs, img, "v2", fresh, UnpackOptions{})
			diffTrees(t, "changed", want, "unpacked v2", desc(filepath.Join(fresh, snapshot.RootfsDir)))

			// Nothing changed since: an empty layer.
			pending, err = bundleDiff(context.Background(), bundle, snapshot.StoreOptions{})
			must(t, err)
			if !pending.Empty() {
				t.Fatalf("bundleDiff after a commit: %v", pending.Paths())
			}
			again := commitBundle(t, bundle, img, "v3", CommitOptions{})
			if again.Layer != nil {
				t.Fatalf("second commit wrote %d entries", again.Entries)
			}
			// And again on top: a third layer stacks.
			must(t, os.WriteFile(filepath.Join(rootfs, "etc", "third"), []byte("3"), 0o644))
			must(t, os.Remove(filepath.Join(rootfs, "etc", "added")))
			third := commitBundle(t, bundle, img, "v4", CommitOptions{})
			if third.Layer == nil || third.Entries != 3 {
				t.Fatalf("third commit: want etc/, etc/.wh.added and etc/third, got %d entries", third.Entries)
			}
			want = desc(rootfs)
			// Every snapshot of the bundle's store still rebuilds its
			// layer: committed snapshots share files with their parents
			// and nothing was written through them.
			rec, err := ReadRecord(bundle)
			must(t, err)
			for _, id := range rec.Chain {
				in, err := s.Get(id.Encoded())
				must(t, err)
				if err := in.Verify(context.Background()); err != nil {
					t.Fatalf("snapshot %s: %v", id, err)
				}
			}
			fresh4 := filepath.Join(t.TempDir(), "fresh4")
			from := vs
			if driver == vfs.Name {
				from = s // the committed snapshots themselves
			}
			unpackRef(t, from, img, "v4", fresh4, UnpackOptions{})
			diffTrees(t, "changed", want, "unpacked v4", desc(filepath.Join(fresh4, snapshot.RootfsDir)))
			if n := len(readImage(t, img, "v4").Manifest.Layers); n != 5 {
				t.Fatalf("v4 has %d layers, want 5", n)
			}
		})
	}
}

func TestCommitReproducible(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	ts := time.Unix(1600000000, 0).UTC()
	var digests []string
	for i := range 2 {
		bundle := filepath.Join(t.TempDir(), fmt.Sprint("b", i))
		unpack(t, s, img, bundle, UnpackOptions{})
		r := filepath.Join(bundle, snapshot.RootfsDir)
		must(t, os.WriteFile(filepath.Join(r, "etc/new"), []byte("same"), 0o644))
		must(t, os.Remove(filepath.Join(r, "etc/passwd")))
		// Different wall clocks, same change.
		time.Sleep(10 * time.Millisecond)
		res := commitBundle(t, bundle, img, fmt.Sprint("r", i), CommitOptions{Timestamp: &ts, CreatedBy: "same"})
		digests = append(digests, res.Layer.Descriptor.Digest.String()+" "+res.Manifest.Digest.String())
		// The rootfs took the clamped mtime, so the next commit is empty.
		var st unix.Stat_t
		must(t, unix.Lstat(filepath.Join(r, "etc/new"), &st))
		if st.Mtim.Nano() != ts.UnixNano() {
			t.Fatalf("etc/new mtime %d, want clamped %d", st.Mtim.Nano(), ts.UnixNano())
		}
		if again := commitBundle(t, bundle, img, "", CommitOptions{}); again.Layer != nil {
			t.Fatalf("commit after a clamped commit wrote %v", again.Entries)
		}
	}
	if digests[0] != digests[1] {
		t.Fatalf("same change, different digests:\n%s\n%s", digests[0], digests[1])
	}
}

func TestCommitIDMap(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	m := &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 200000, Size: 65536}}}
	unpack(t, s, img, bundle, UnpackOptions{IDMap: m})
	r := filepath.Join(bundle, snapshot.RootfsDir)
	must(t, os.WriteFile(filepath.Join(r, "owned"), []byte("x"), 0o644))
	must(t, os.Lchown(filepath.Join(r, "owned"), 100000+7, 200000+8))
	res := commitBundle(t, bundle, img, "v2", CommitOptions{})
	if res.Entries != 1 {
		t.Fatalf("want one entry, got %d", res.Entries)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	unpackRef(t, s, img, "v2", fresh, UnpackOptions{})
	st := lstat(t, filepath.Join(fresh, snapshot.RootfsDir, "owned"))
	if st.Uid != 7 || st.Gid != 8 {
		t.Fatalf("owner %d:%d, want the shift undone: 7:8", st.Uid, st.Gid)
	}
	// A file owned outside the map cannot be committed.
	must(t, os.Lchown(filepath.Join(r, "owned"), 5, 5))
	l, err := layout.Open(img)
	must(t, err)
	defer l.Close()
	if _, err := Commit(context.Background(), bundle, l, CommitOptions{}); err == nil || !strings.Contains(err.Error(), "outside the id map") {
		t.Fatalf("commit of an unmapped owner: %v", err)
	}
}

func TestCommitErrors(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	l, err := layout.Open(img)
	must(t, err)
	defer l.Close()
	if _, err := Commit(context.Background(), t.TempDir(), l, CommitOptions{}); !errors.Is(err, ErrNotUnpacked) {
		t.Fatalf("commit of a plain directory: %v", err)
	}
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, img, bundle, UnpackOptions{})
	if _, err := Commit(context.Background(), bundle, l, CommitOptions{Ref: "bad ref"}); err == nil {
		t.Fatal("commit accepted a bad ref")
	}
	// The record names a manifest the layout no longer has.
	rec, err := ReadRecord(bundle)
	must(t, err)
	rec.Manifest = digest.Digest("sha256:" + strings.Repeat("0", 64))
	b, _ := json.Marshal(rec)
	must(t, os.WriteFile(filepath.Join(bundle, RecordFile), b, 0o644))
	before, err := l.Index()
	must(t, err)
	if _, err := Commit(context.Background(), bundle, l, CommitOptions{Ref: "v9"}); !errors.Is(err, ErrParentGone) {
		t.Fatalf("commit without its parent image: %v", err)
	}
	after, err := l.Index()
	must(t, err)
	if len(after.Manifests) != len(before.Manifests) {
		t.Fatal("a failed commit changed index.json")
	}
}

// TestCommitOtherLayout commits into a layout that does not hold the
// parent image: its layers are copied over.
func TestCommitOtherLayout(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, img, bundle, UnpackOptions{})
	must(t, os.WriteFile(filepath.Join(bundle, snapshot.RootfsDir, "x"), []byte("x"), 0o644))
	other := filepath.Join(t.TempDir(), "other")
	l, err := layout.Init(other)
	must(t, err)
	l.Close()
	commitBundle(t, bundle, other, "v1", CommitOptions{})
	ol, err := layout.Open(other)
	must(t, err)
	defer ol.Close()
	problems, err := ol.Fsck(context.Background())
	must(t, err)
	if len(problems) != 0 {
		t.Fatalf("fsck: %v", problems)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	unpackRef(t, s, other, "v1", fresh, UnpackOptions{})
	if _, err := os.Stat(filepath.Join(fresh, snapshot.RootfsDir, "x")); err != nil {
		t.Fatal(err)
	}
}

// TestCommitRecoverUpper simulates commits killed in the middle of the
// overlay upper directory swap: the next commit puts the bundle right.
func TestCommitRecoverUpper(t *testing.T) {
	needRoot(t)
	img, _ := buildStandard(t)
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, img, bundle, UnpackOptions{Driver: overlay.Name})
	rootfs := filepath.Join(bundle, snapshot.RootfsDir)
	t.Cleanup(func() { _ = overlay.Unmount(rootfs) })
	must(t, os.WriteFile(filepath.Join(rootfs, "one"), []byte("1"), 0o644))
	must(t, overlay.Unmount(rootfs))
	state := filepath.Join(bundle, snapshot.BundleState)
	// Killed after the upper directory was moved away, before the new
	// one took its place.
	must(t, os.Rename(filepath.Join(state, overlay.UpperDir), filepath.Join(state, overlay.UpperDir+swapOld+"1")))
	must(t, os.Rename(filepath.Join(state, overlay.WorkDir), filepath.Join(state, overlay.WorkDir+swapOld+"1")))
	must(t, os.Mkdir(filepath.Join(state, overlay.UpperDir+swapNext+"1"), 0o755))
	res := commitBundle(t, bundle, img, "v2", CommitOptions{})
	if res.Layer == nil || res.Entries != 1 {
		t.Fatalf("commit after recovery: %+v", res)
	}
	ents, err := os.ReadDir(state)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, " ") != strings.Join([]string{CommitLock, overlay.UpperDir, overlay.WorkDir}, " ") {
		t.Fatalf("state directory after recovery: %v", names)
	}
	// Killed after the swap, before the old directories were removed.
	must(t, os.Mkdir(filepath.Join(state, overlay.UpperDir+swapOld+"2"), 0o755))
	must(t, os.Mkdir(filepath.Join(state, overlay.WorkDir+swapOld+"2"), 0o700))
	if again := commitBundle(t, bundle, img, "v3", CommitOptions{}); again.Layer != nil {
		t.Fatalf("stale old upper directory was committed: %d entries", again.Entries)
	}
	if _, err := os.Lstat(filepath.Join(state, overlay.UpperDir+swapOld+"2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale old upper directory kept: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	unpackRef(t, openStore(t), img, "v3", fresh, UnpackOptions{})
	if b, err := os.ReadFile(filepath.Join(fresh, snapshot.RootfsDir, "one")); err != nil || string(b) != "1" {
		t.Fatalf("one: %q %v", b, err)
	}
}

// TestCommitHostPlatform: a parent config without os and architecture
// gets the host's in the committed image.
func TestCommitHostPlatform(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "img")
	l, err := layout.Init(dir)
	must(t, err)
	tarball := layertest.Tar(layertest.File("f", "f", 0o644))
	ld, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, layertest.Gzip(tarball))
	must(t, err)
	cfg := layout.NewConfig(ocispec.Platform{})
	must(t, cfg.Set("architecture", nil))
	must(t, cfg.Set("os", nil))
	must(t, cfg.AppendLayer(layertest.DiffID(tarball)))
	md, err := l.PutImage(cfg, []ocispec.Descriptor{ld}, nil)
	must(t, err)
	md.Platform = nil
	must(t, l.Tag(md, "v1"))
	l.Close()
	s := openStore(t)
	bundle := filepath.Join(t.TempDir(), "b")
	unpack(t, s, dir, bundle, UnpackOptions{})
	must(t, os.WriteFile(filepath.Join(bundle, snapshot.RootfsDir, "g"), []byte("g"), 0o644))
	res := commitBundle(t, bundle, dir, "v2", CommitOptions{})
	host, err := layout.ParsePlatform("")
	must(t, err)
	l, err = layout.Open(dir)
	must(t, err)
	defer l.Close()
	img, err := l.ReadImage(res.Manifest)
	must(t, err)
	if img.Config.OS != host.OS || img.Config.Architecture != host.Architecture {
		t.Fatalf("platform %s/%s, want the host's %s/%s", img.Config.OS, img.Config.Architecture, host.OS, host.Architecture)
	}
}
