package tests

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-oci/strata/layout"
)

// TestCopyLinksOnlyVerifiedBlobs copies a layout within one file system:
// blobs are linked, repeat copies trust the seals written by the first
// (the source inode is unchanged), and a blob rewritten in place, even
// with its mtime put back, is hashed again and refused with its digest
// named, leaving the destination as it was.
func TestCopyLinksOnlyVerifiedBlobs(t *testing.T) {
	work := t.TempDir()
	src := filepath.Join(work, "src")
	img := makeImage(t, src, "sealed", "linux/amd64", "", "a")
	l, err := layout.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	m, err := l.ReadImage(img.Desc)
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Manifest.Layers[0].Digest
	layerPath := filepath.Join(src, "blobs", "sha256", layer.Encoded())
	if _, err := os.Stat(filepath.Join(src, ".strata", "seals", "sha256", layer.Encoded())); err != nil {
		t.Fatalf("the layer strata wrote has no seal: %v", err)
	}

	for i, dst := range []string{"d1", "d2", "d3"} {
		dst = filepath.Join(work, dst)
		r := runCmd(t, nil, strataBin, "--debug", "copy", "oci:"+src+":a", "oci:"+dst+":a")
		if r.Code != 0 {
			t.Fatalf("copy %d: %s", i, r.Stderr)
		}
		linked := false
		for _, line := range strings.Split(r.Stderr, "\n") {
			linked = linked || (strings.Contains(line, layer.String()) && strings.HasSuffix(line, ": hardlink"))
		}
		if !linked {
			t.Fatalf("copy %d did not link the layer:\n%s", i, r.Stderr)
		}
		fsckClean(t, dst)
		if i == 1 {
			// Removing a copy moves the shared inode's ctime: the seal
			// must still hold for the next copy (it is only a link).
			if err := os.RemoveAll(filepath.Join(work, "d1")); err != nil {
				t.Fatal(err)
			}
		}
	}
	var st syscall.Stat_t
	if err := syscall.Stat(layerPath, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 3 {
		t.Fatalf("layer has %d links, want 3 (src, d2, d3)", st.Nlink)
	}

	// Rewrite the layer in place, same size, and put its mtime back.
	fi, err := os.Stat(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(layerPath)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.Chmod(layerPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layerPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(layerPath, time.Time{}, fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(work, "d4")
	makeImage(t, dst, "other", "linux/amd64", "", "other")
	before := snapshotLayout(t, dst)
	r := strataFail(t, "copy", "oci:"+src+":a", "oci:"+dst+":a")
	if !strings.Contains(r.Stderr, layer.String()) || !strings.Contains(r.Stderr, "digest mismatch") {
		t.Fatalf("copy of a rewritten layer: %s", r.Stderr)
	}
	if after := snapshotLayout(t, dst); after != before {
		t.Fatalf("the destination changed:\nbefore %s\nafter %s", before, after)
	}
}
