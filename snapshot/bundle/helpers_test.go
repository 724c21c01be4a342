package bundle

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/overlay"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/ids"
	"github.com/strata-oci/strata/snapshot/layertest"
	"golang.org/x/sys/unix"
)

var (
	needRoot          = layertest.NeedRoot
	lstat             = layertest.Lstat
	must              = layertest.Must
	buildStandard     = layertest.BuildStandard
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

func unpack(t *testing.T, s *snapshot.Store, layoutDir, bundle string, o UnpackOptions) *Record {
	t.Helper()
	l, err := layout.Open(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rec, err := Unpack(context.Background(), s, l, "v1", bundle, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// changeRootfs makes, as root, every kind of change a commit must carry.
func changeRootfs(t testing.TB, r string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(r, n) }
	must(t, os.WriteFile(p("etc/added"), []byte("added\n"), 0o640))
	must(t, os.MkdirAll(p("newdir/sub"), 0o755))
	must(t, os.WriteFile(p("newdir/sub/f"), []byte("deep new"), 0o600))
	f, err := os.OpenFile(p("etc/passwd"), os.O_APPEND|os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteString("bob:x:1001:1001::/:/bin/sh\n")
	must(t, err)
	must(t, f.Close())
	must(t, os.Remove(p("etc/group")))
	must(t, os.RemoveAll(p("home/alice")))
	must(t, os.Chmod(p("usr/bin/sgid"), 0o2700))
	must(t, os.Lchown(p("app"), 1000, 10))
	must(t, os.RemoveAll(p("opq")))
	must(t, os.WriteFile(p("opq"), []byte("was a directory"), 0o644))
	must(t, os.Link(p("big"), p("big-third")))
	must(t, unix.Lsetxattr(p("usr/lib/libc.so"), "user.test", []byte("set"), 0))
	must(t, os.RemoveAll(p("file-to-dir")))
	must(t, os.Mkdir(p("file-to-dir"), 0o711))
	must(t, os.WriteFile(p("file-to-dir/replaced"), []byte("new contents"), 0o644))
	must(t, os.Remove(p("lib")))
	must(t, os.Symlink("usr/lib64", p("lib")))
	must(t, unix.Mkfifo(p("new-fifo"), 0o600))
	must(t, unix.Mknod(p("dev/zero"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5))))
	must(t, os.WriteFile(p("etc/motd"), []byte("changed through a hardlink\n"), 0o644))
}

func commitBundle(t testing.TB, bundle, layoutDir, ref string, o CommitOptions) *CommitResult {
	t.Helper()
	l, err := layout.Open(layoutDir)
	must(t, err)
	defer l.Close()
	o.Ref = ref
	res, err := Commit(context.Background(), bundle, l, o)
	if err != nil {
		t.Fatalf("commit %s: %v", bundle, err)
	}
	return res
}

func unpackRef(t testing.TB, s *snapshot.Store, layoutDir, ref, bundle string, o UnpackOptions) *Record {
	t.Helper()
	l, err := layout.Open(layoutDir)
	must(t, err)
	defer l.Close()
	rec, err := Unpack(context.Background(), s, l, ref, bundle, o)
	if err != nil {
		t.Fatalf("unpack %s:%s: %v", layoutDir, ref, err)
	}
	return rec
}

func readImage(t testing.TB, layoutDir, ref string) *layout.Image {
	t.Helper()
	l, err := layout.Open(layoutDir)
	must(t, err)
	defer l.Close()
	img, err := l.Image(ref, nil)
	must(t, err)
	return img
}

// unmountLater unmounts a bundle's rootfs when the test ends.
func unmountLater(t *testing.T, bundle string) {
	t.Cleanup(func() {
		rootfs := filepath.Join(bundle, snapshot.RootfsDir)
		if ok, _ := overlay.IsMounted(rootfs); ok {
			if err := overlay.Unmount(rootfs); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
}

// testMap shifts users by 100000 and groups by 200000, so that a swapped
// uid and gid shows.
var testMap = &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: 100000, Size: 65536}}, GIDs: []ids.Range{{ContainerID: 0, HostID: 200000, Size: 65536}}}

func wantOwner(t *testing.T, p string, uid, gid uint32) {
	t.Helper()
	st := lstat(t, p)
	if st.Uid != uid || st.Gid != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
}

// layerHeaders reads the tar headers of a committed layer blob.
func layerHeaders(t *testing.T, layoutDir string, res *CommitResult) map[string]*tar.Header {
	t.Helper()
	l, err := layout.Open(layoutDir)
	must(t, err)
	defer l.Close()
	d := res.Layer.Descriptor
	rc, err := l.Blobs().Open(d.Digest, d.Size)
	must(t, err)
	defer rc.Close()
	dr, _, err := compression.NewSniffingReader(rc)
	must(t, err)
	defer dr.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(dr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		out[strings.TrimSuffix(h.Name, "/")] = h
	}
}

// mappedChanges makes the same changes in a rootfs whose owners are
// shifted by testMap, as a container's root would: new files belong to
// shifted IDs.
func mappedChanges(t *testing.T, r string) {
	p := func(s string) string { return filepath.Join(r, s) }
	must(t, os.WriteFile(p("etc/new"), []byte("new\n"), 0o644))
	must(t, os.Lchown(p("etc/new"), 100000+33, 200000+33))
	must(t, os.Mkdir(p("srv/made"), 0o750))
	must(t, os.Lchown(p("srv/made"), 100000+1000, 200000+1000))
	must(t, os.Remove(p("etc/passwd")))
	must(t, os.Lchown(p("etc/group"), 100000+1000, 200000+10))
	must(t, os.WriteFile(p("opq/upper"), []byte("rewritten\n"), 0o644))
}

// capV2 is the image's form of a file capability (cap_net_raw, effective).
var capV2 = []byte("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")

// capV3 is capV2 scoped to the namespace whose root is uid.
func capV3(uid uint32) []byte {
	v := append([]byte(nil), capV2...)
	binary.LittleEndian.PutUint32(v, 0x03000001)
	return binary.LittleEndian.AppendUint32(v, uid)
}

const capXattr = "security.capability"

// killedUnpack makes bundle look like what an unpack of img (layout dir)
// killed midway leaves: its marker, nobody holding it, next to partial
// work (which, for overlay, includes the mounted rootfs).
func killedUnpack(t *testing.T, s *snapshot.Store, img, bundle, driver string) {
	t.Helper()
	unpack(t, s, img, bundle, UnpackOptions{Driver: driver})
	rec, err := ReadRecord(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(progress{Layout: rec.Layout, Ref: rec.Ref, Manifest: rec.Manifest, Driver: driver, PID: 1})
	if err := os.WriteFile(filepath.Join(bundle, ProgressFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// Killed before its record was written.
	if err := os.Remove(filepath.Join(bundle, RecordFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, snapshot.RootfsDir, "half-written"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// snapshotFiles counts the files of every snapshot of s.
func snapshotFiles(t *testing.T, s *snapshot.Store) int {
	t.Helper()
	n := 0
	err := filepath.Walk(filepath.Join(s.Root(), snapshot.SnapshotsDir), func(_ string, _ os.FileInfo, err error) error {
		n++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The name parts of the directories the overlay driver's upper
// directory swap (Rebase) leaves beside the pair in place when it is
// killed.
const (
	swapNext = ".next-"
	swapOld  = ".old-"
)
