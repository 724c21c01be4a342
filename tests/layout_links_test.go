package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayoutLinksRefused replaces each of a layout's own directories and
// files by a symbolic link to a copy of it outside the layout (a layout
// copied from an untrusted share), then runs every command that reads,
// writes or deletes in a layout: each is refused with an error naming the
// link, and nothing outside the layout is created, changed or removed.
func TestLayoutLinksRefused(t *testing.T) {
	work := t.TempDir()
	rootfs := filepath.Join(work, "rootfs.tar")
	if err := os.WriteFile(rootfs, rootfsTar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(work, "src")
	strata(t, "import", rootfs, src+":v1")
	archive := filepath.Join(work, "img.tar")
	strata(t, "save", src+":v1", "-o", archive)

	for _, rel := range []string{
		"blobs", "blobs/sha256", ".strata", ".strata/staging", ".strata/seals", ".strata/seals/sha256",
		".strata/partial", "index.json", "oci-layout",
	} {
		t.Run(rel, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "layout")
			strata(t, "import", rootfs, dir+":v1")
			strata(t, "import", "-c", "CMD [\"garbage\"]", rootfs, dir+":gone")
			strata(t, "rm", dir+":gone") // leaves blobs for gc
			os.MkdirAll(filepath.Join(dir, ".strata", "staging"), 0o755)
			os.MkdirAll(filepath.Join(dir, ".strata", "partial", "sha256"), 0o755)
			os.WriteFile(filepath.Join(dir, ".strata", "staging", "ingest-dead"), []byte("dead writer"), 0o644)
			os.WriteFile(filepath.Join(dir, ".strata", "partial", "sha256", strings.Repeat("a", 64)), []byte("old"), 0o644)
			if _, err := os.Lstat(filepath.Join(dir, rel)); err != nil {
				t.Fatalf("%s was not made: %v", rel, err)
			}
			// The outside copy: what the link replaces, so that every
			// name a command would touch through the link exists there.
			outside := filepath.Join(filepath.Dir(dir), "outside")
			mustRun(t, "cp", "-a", filepath.Join(dir, rel), outside)
			link := filepath.Join(dir, rel)
			if err := os.RemoveAll(link); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, link); err != nil {
				t.Fatal(err)
			}
			sentinel := filepath.Join(filepath.Dir(dir), "sentinel")
			os.MkdirAll(sentinel, 0o755)
			before := outsideState(t, filepath.Dir(dir), outside)

			for _, args := range [][]string{
				{"gc", dir},
				{"fsck", dir},
				{"ls", dir},
				{"import", rootfs, dir + ":new"},
				{"copy", "oci:" + src + ":v1", "oci:" + dir + ":copied"},
				{"copy", "oci:" + dir + ":v1", "oci:" + filepath.Join(sentinel, "out") + ":v1"},
				{"load", archive, dir + ":loaded"},
				{"tag", dir + ":v1", "v2"},
				{"pull", "127.0.0.1:1/x:v1", dir + ":pulled"},
			} {
				r := runCmd(t, nil, strataBin, append([]string{"--quiet"}, args...)...)
				if r.Code != 1 || !strings.Contains(r.Stderr, link) || !strings.Contains(r.Stderr, "symbolic link") {
					t.Errorf("strata %s: exit %d, stderr %q; want exit 1 and an error naming the link %s", strings.Join(args, " "), r.Code, strings.TrimSpace(r.Stderr), link)
				}
			}
			after := outsideState(t, filepath.Dir(dir), outside)
			if after != before {
				t.Fatalf("commands changed things outside the layout through %s:\nbefore:\n%s\nafter:\n%s", rel, before, after)
			}
			if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Fatalf("the link %s was replaced or removed: %v", link, err)
			}
		})
	}
}
