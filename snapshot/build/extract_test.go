package build

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// extractInto runs ADD's extraction of the tar data into a new rootfs
// under root, as this process can (owners it lacks go to the xattr).
func extractInto(t *testing.T, root string, data []byte) error {
	t.Helper()
	src, rootfs := filepath.Join(root, "src"), filepath.Join(root, "rootfs")
	for _, d := range []string{src, rootfs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "a.tar"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := fsx.OpenTree(src)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dt, err := fsx.OpenTree(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	defer dt.Close()
	w := &writer{}
	if os.Geteuid() != 0 {
		w.m = &ids.Map{UIDs: []ids.Range{{ContainerID: 0, HostID: uint32(os.Geteuid()), Size: 1}}, GIDs: []ids.Range{{ContainerID: 0, HostID: uint32(os.Getegid()), Size: 1}}}
	}
	c := &copier{t: dt, w: w, src: &source{t: st}, now: time.Unix(1, 0)}
	return c.extract(&item{name: "a.tar", rel: "a.tar"}, "")
}

func TestExtractConfined(t *testing.T) {
	for name, entries := range lt.Hostile("sentinel") {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			_ = extractInto(t, root, lt.Tar(entries...))
			checkConfined(t, root)
		})
	}
	root := t.TempDir()
	err := extractInto(t, root, lt.Tar(lt.Dir("d", 0o750), lt.File("d/f", "f", 0o640), lt.Symlink("d/l", "f"), lt.Hardlink("d/h", "d/f")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "rootfs/d/h"))
	if err != nil || string(b) != "f" {
		t.Errorf("hardlink: %q, %v", b, err)
	}
}

// checkConfined fails when anything but src/ and rootfs/ is under root.
func checkConfined(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "src" && e.Name() != "rootfs" {
			t.Errorf("extraction wrote %s outside the rootfs", e.Name())
		}
	}
	_ = filepath.Walk(filepath.Join(root, "src"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Base(p) != "a.tar" {
			t.Errorf("extraction wrote %s into the source", p)
		}
		return nil
	})
}

func FuzzExtract(f *testing.F) {
	for _, entries := range lt.Hostile("sentinel") {
		f.Add(lt.Tar(entries...))
	}
	f.Add(lt.Tar(lt.Dir("a", 0o755), lt.File("a/b", "x", 0o644)))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "../../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	_, _ = tw.Write([]byte("x"))
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		err := extractInto(t, root, data)
		checkConfined(t, root)
		if err != nil && strings.Contains(err.Error(), "panic") {
			t.Fatal(err)
		}
	})
}
