package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// Tests of strata flatten, export and diff on a two-platform image of
// four layers using every entry type and layer operation (whiteouts,
// opaque directories, hardlinks across layers whose targets later layers
// replace or remove, symlinks, devices, xattrs): flatten and export give
// what umoci unpack gives, file for file; export gives what docker export
// of a container of the image gives; diff lists a hand-made change set,
// and the difference of two umoci unpacks.

var fltPlats = []ocispec.Platform{mutAMD64, mutARM64}

// fltLayers are a platform's layers: the standard three, and a fourth
// that replaces and removes targets of hardlinks, makes a directory
// opaque again and, unless forDocker, writes through a lower layer's
// symlink to a directory (docker, whose layers are overlay directories,
// makes a directory of the symlink instead, as strata's overlay driver
// does; umoci and strata's vfs follow it).
func fltLayers(arch string, forDocker bool) [][]byte {
	F := layertest.File
	l4 := []layertest.Entry{
		F("etc/motd", "layer four on "+arch+"\n", 0o644), // app-link keeps layer two's
		layertest.Whiteout("usr/bin/ping"),               // ping-link keeps it
		layertest.Dir("opq", 0o750),
		layertest.Opaque("opq"),
		F("opq/only-"+arch, "only", 0o600),
		layertest.Owned(layertest.Dir("srv", 0o2775), 33, 33),
		layertest.Owned(layertest.Dir("srv/data", 0o770), 1000, 1000),
		layertest.WithXattrs(F("srv/data/tagged", "x", 0o644), map[string]string{"user.arch": arch}),
	}
	if !forDocker {
		l4 = append(l4, F("lib/libm.so", "libm "+arch, 0o755)) // lib -> usr/lib
	}
	return append(layertest.Standard(nil), layertest.Tar(l4...))
}

// fltImage builds the two-platform image "v1" in a new layout.
func fltImage(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "img")
	var imgs []layertest.PlatformImage
	for _, p := range fltPlats {
		imgs = append(imgs, layertest.PlatformImage{Platform: p, Layers: fltLayers(p.Architecture, false), Cmd: []string{"/bin/sh"},
			Annotations: map[string]string{"org.opencontainers.image.base.name": "docker.io/library/busybox:1"}})
	}
	if _, _, err := layertest.BuildIndex(dir, "v1", imgs...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fltUmoci unpacks platform p of ref with umoci (which reads one
// manifest: the platform's is copied out first) and describes the tree.
func fltUmoci(t *testing.T, dir, ref string, p ocispec.Platform) map[string]string {
	t.Helper()
	work := t.TempDir()
	one := filepath.Join(work, "one")
	strata(t, "copy", "--platform", platforms.Format(p), "oci:"+dir+":"+ref, "oci:"+one+":x")
	mustRun(t, "umoci", "unpack", "--image", one+":x", filepath.Join(work, "bundle"))
	return layertest.DescribeTree(t, filepath.Join(work, "bundle", "rootfs"))
}

// fltGNUTar extracts a tar with GNU tar, owners, modes, xattrs kept, and
// describes the tree.
func fltGNUTar(t *testing.T, tarball string) map[string]string {
	t.Helper()
	root := t.TempDir()
	mustRun(t, "tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tarball, "-C", root)
	return layertest.DescribeTree(t, root)
}

func TestFlattenExportEqualUmoci(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	needTool(t, "skopeo")
	dir := fltImage(t)
	want := map[string]map[string]string{}
	for _, p := range fltPlats {
		ps := platforms.Format(p)
		want[ps] = fltUmoci(t, dir, "v1", p)
		// export, extracted by GNU tar, is umoci's tree.
		out := filepath.Join(t.TempDir(), "rootfs.tar")
		strata(t, "export", "--platform", ps, dir+":v1", "-o", out)
		layertest.DiffTrees(t, "umoci unpack "+ps, want[ps], "strata export "+ps, fltGNUTar(t, out))
		// Twice the same bytes, and the same on stdout.
		again := strata(t, "export", "--platform", ps, dir+":v1")
		if b, _ := os.ReadFile(out); !bytes.Equal(b, []byte(again)) {
			t.Errorf("%s: a second export differs", ps)
		}
	}
	before := mutIndexState(t, dir)
	d := mutDigest(t, strata(t, "flatten", dir+":v1", dir+":flat"))
	if before == mutIndexState(t, dir) {
		t.Fatal("flatten changed nothing")
	}
	if got := resolve(t, dir, "flat").Digest; got != d {
		t.Fatalf("flat is %s, flatten printed %s", got, d)
	}
	for _, p := range fltPlats {
		ps := platforms.Format(p)
		img := mutRead(t, dir, "flat", p)
		if n := len(img.Manifest.Layers); n != 1 || len(img.Config.History) != 1 {
			t.Fatalf("%s: %d layers, %d history entries after flatten", ps, n, len(img.Config.History))
		}
		if _, ok := img.Manifest.Annotations["org.opencontainers.image.base.name"]; ok {
			t.Errorf("%s: the base annotation is kept", ps)
		}
		layertest.DiffTrees(t, "umoci unpack "+ps, want[ps], "umoci unpack of flattened "+ps, fltUmoci(t, dir, "flat", p))
		layertest.DiffTrees(t, "umoci unpack "+ps, want[ps], "strata unpack of flattened "+ps, mutTrees(t, dir, "flat", p))
		// skopeo reads it, as a layout and copied out of it.
		var info struct{ Layers []string }
		if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", "--override-arch", p.Architecture, "--override-variant", p.Variant, "oci:"+dir+":flat")), &info); err != nil {
			t.Fatal(err)
		}
		if len(info.Layers) != 1 || info.Layers[0] != img.Manifest.Layers[0].Digest.String() {
			t.Errorf("%s: skopeo sees layers %v", ps, info.Layers)
		}
	}
	mustRun(t, "skopeo", "copy", "--all", "oci:"+dir+":flat", "oci:"+filepath.Join(t.TempDir(), "copy")+":flat")
	strata(t, "fsck", "--diffids", dir)
	fltCraneReads(t, dir)
	// With no NEWREF the name moves; --platform flattens one platform.
	strata(t, "flatten", "--platform", "linux/arm64", "--compression", "zstd", dir+":v1")
	if n := len(mutRead(t, dir, "v1", mutAMD64).Manifest.Layers); n != 4 {
		t.Errorf("amd64 has %d layers after flattening arm64 alone", n)
	}
	arm := mutRead(t, dir, "v1", mutARM64)
	if n := len(arm.Manifest.Layers); n != 1 || !strings.HasSuffix(arm.Manifest.Layers[0].MediaType, "+zstd") {
		t.Errorf("arm64 after flatten --platform: %d layers, %v", n, arm.Manifest.Layers)
	}
}

// fltCraneReads pushes the flattened image to a local registry: crane
// validates it, and crane export of each platform (its one layer) is
// strata export's tar of the unflattened image, file for file.
func fltCraneReads(t *testing.T, dir string) {
	t.Helper()
	crane := needTool(t, "crane")
	ref := regStart(t, regConfig{}).listen + "/flt/flat"
	strata(t, "push", dir+":flat", ref)
	mustRun(t, crane, "--insecure", "validate", "--remote", ref)
	for _, p := range fltPlats {
		ps := platforms.Format(p)
		want := fltTarFiles(t, strings.NewReader(strata(t, "export", "--platform", ps, dir+":v1")))
		got := fltTarFiles(t, strings.NewReader(mustRun(t, crane, "--insecure", "--platform", ps, "export", ref, "-")))
		layertest.DiffTrees(t, "strata export "+ps, want, "crane export of flattened "+ps, got)
	}
}

// fltTarFiles reads a tar's entries: type, mode, owner, content hash or
// link target, hardlinks resolved to their target's content.
func fltTarFiles(t *testing.T, r io.Reader) map[string]string {
	t.Helper()
	tr := tar.NewReader(r)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || name == "." {
			continue
		}
		desc := fmt.Sprintf("type=%c mode=%o owner=%d:%d", h.Typeflag, h.Mode&0o7777, h.Uid, h.Gid)
		switch h.Typeflag {
		case tar.TypeReg:
			s := sha256.New()
			if _, err := io.Copy(s, tr); err != nil {
				t.Fatal(err)
			}
			desc += fmt.Sprintf(" size=%d sha=%x", h.Size, s.Sum(nil)[:6])
		case tar.TypeLink:
			target := out[strings.TrimPrefix(h.Linkname, "./")]
			desc = target
		case tar.TypeSymlink:
			desc += " link=" + h.Linkname
		case tar.TypeChar, tar.TypeBlock:
			desc += fmt.Sprintf(" dev=%d:%d", h.Devmajor, h.Devminor)
		}
		out[name] = desc
	}
}

// fltDockerRuntime are the files docker export adds or changes for a
// container's runtime, left out of the comparison.
func fltDockerRuntime(p string) bool {
	for _, r := range []string{".dockerenv", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/mtab", "dev", "proc", "sys"} {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}

// fltWithinLayer drops from a layer the hardlinks to files of lower
// layers, which docker 20.10's layer extraction cannot make ("link ...:
// no such file or directory").
func fltWithinLayer(t *testing.T, layer []byte) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeLink && !seen[h.Linkname] {
			continue
		}
		seen[h.Name] = true
		layertest.Must(t, tw.WriteHeader(h))
		if _, err := io.Copy(tw, tr); err != nil {
			t.Fatal(err)
		}
	}
	layertest.Must(t, tw.Close())
	return buf.Bytes()
}

func TestExportEqualsDockerExport(t *testing.T) {
	e := startDockerd(t)
	dir := filepath.Join(t.TempDir(), "img")
	var ls [][]byte
	for _, l := range fltLayers("amd64", true) {
		ls = append(ls, fltWithinLayer(t, l))
	}
	if err := layertest.BuildImage(dir, "v1", layertest.Image{Layers: ls, Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	strata(t, "save", "-o", archive, dir+":v1")
	out := e.must(t, "load", "-i", archive)
	ref := ""
	for _, line := range strings.Split(out, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "Loaded image: "); ok {
			ref = n
		}
	}
	if ref == "" {
		t.Fatalf("docker load named no image:\n%s", out)
	}
	id := strings.TrimSpace(e.must(t, "create", ref))
	defer e.run(t, "rm", id)
	cmd := e.command("export", id)
	var dockerTar bytes.Buffer
	cmd.Stdout = &dockerTar
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker export: %v", err)
	}
	want := fltTarFiles(t, &dockerTar)
	got := fltTarFiles(t, strings.NewReader(strata(t, "export", "--platform", "linux/amd64", dir+":v1")))
	for _, m := range []map[string]string{want, got} {
		for p := range m {
			if fltDockerRuntime(p) {
				delete(m, p)
			}
		}
	}
	layertest.DiffTrees(t, "docker export", want, "strata export", got)
	// The archive docker load read gives the same export, read through a
	// private layout.
	fromArchive := fltTarFiles(t, strings.NewReader(strata(t, "export", "docker-archive:"+archive)))
	for p := range fromArchive {
		if fltDockerRuntime(p) {
			delete(fromArchive, p)
		}
	}
	layertest.DiffTrees(t, "strata export", got, "strata export of the archive", fromArchive)
}

// fltChanges parses podman diff's output into "K /path" lines.
func fltChanges(out string) []string {
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestDiffHandMade(t *testing.T) {
	dir := fltImage(t)
	F := layertest.File
	// v2 is v1's amd64 image with a layer of known changes.
	change := layertest.Tar(
		F("etc/group", "root:x:0:\nalice:x:1000:\nwheel:x:10:bobby\n", 0o644), // same size, other content
		F("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644),
		layertest.Owned(F("app", "run me", 0o755), 7, 7),
		F("usr/bin/suid", "#!/bin/sh\n", 0o755),
		layertest.Whiteout("big"),
		layertest.Whiteout("home"),
		layertest.Dir("srv/new", 0o755), F("srv/new/f", "new", 0o644),
		F("tmp", "no longer a directory", 0o644),
	)
	amd := fltLayers("amd64", false)
	v2 := filepath.Join(t.TempDir(), "v2")
	if err := layertest.BuildImage(v2, "v2", layertest.Image{Layers: append(amd, change), Cmd: []string{"/bin/sh"}}); err != nil {
		t.Fatal(err)
	}
	got := fltChanges(strata(t, "diff", "--platform", "linux/amd64", dir+":v1", v2+":v2"))
	want := []string{
		"C /app", "D /big", "C /etc", "C /etc/group", "D /home", "C /srv", "A /srv/new", "A /srv/new/f",
		"C /tmp", "C /usr", "C /usr/bin", "C /usr/bin/suid",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("strata diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// --layer names the layer of v2 that made each change.
	withLayer := fltChanges(strata(t, "diff", "--layer", "--platform", "linux/amd64", dir+":v1", v2+":v2"))
	for _, l := range withLayer {
		kind, rest, _ := strings.Cut(l, " ")
		p, lay, _ := strings.Cut(rest, "\t")
		switch {
		case p == "/etc" || p == "/srv" || p == "/usr" || p == "/usr/bin":
			if lay != "-" {
				t.Errorf("%s %s: layer %q, want - (listed for what is under it)", kind, p, lay)
			}
		case !strings.HasPrefix(lay, "layer 4 sha256:"):
			t.Errorf("%s %s: layer %q, want layer 4", kind, p, lay)
		}
	}
	var js []struct {
		Kind    string
		Path    string
		Changes []string
		Layer   *struct{ Index int }
		Old     *struct{ Digest, Mode string }
		New     *struct {
			Digest, Mode string
			UID          int
		}
	}
	if err := json.Unmarshal([]byte(strata(t, "diff", "--json", "--platform", "linux/amd64", dir+":v1", v2+":v2")), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != len(want) {
		t.Fatalf("--json lists %d changes, want %d", len(js), len(want))
	}
	for _, c := range js {
		switch c.Path {
		case "/etc/group":
			if strings.Join(c.Changes, ",") != "content" || c.Old.Digest == "" || c.Old.Digest == c.New.Digest {
				t.Errorf("/etc/group: %+v", c)
			}
		case "/app":
			if strings.Join(c.Changes, ",") != "owner" || c.New.UID != 7 || c.Layer == nil || c.Layer.Index != 4 {
				t.Errorf("/app: %+v", c)
			}
		case "/usr/bin/suid":
			if c.Old.Mode != "4755" || c.New.Mode != "0755" {
				t.Errorf("/usr/bin/suid: %+v", c)
			}
		}
	}
	// Archives are read too; an image against itself has no changes.
	archive := filepath.Join(t.TempDir(), "v2.tar")
	strata(t, "save", "-o", archive, v2+":v2")
	if out := strata(t, "diff", "docker-archive:"+archive, v2+":v2"); out != "" {
		t.Errorf("an image against its archive: %s", out)
	}
}

// fltTreeDiff is what podman diff lists between two trees described by
// layertest.DescribeTree (mtimes and link counts aside).
func fltTreeDiff(a, b map[string]string) []string {
	strip := func(v string) string {
		var keep []string
		for _, f := range strings.Fields(v) {
			if !strings.HasPrefix(f, "mtime=") && !strings.HasPrefix(f, "links=") {
				keep = append(keep, f)
			}
		}
		return strings.Join(keep, " ")
	}
	isDir := func(v string) bool { return strings.HasPrefix(v, "type=40000 ") }
	changed := map[string]byte{}
	for p, bv := range b {
		av, ok := a[p]
		parentGone := false
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			if ad, ok := a[d]; !ok || !isDir(ad) {
				parentGone = true
			}
		}
		switch {
		case !ok || parentGone:
			changed[p] = 'A'
		case strip(av) != strip(bv):
			changed[p] = 'C'
		}
	}
	for p := range a {
		if _, ok := b[p]; ok {
			continue
		}
		d := filepath.Dir(p)
		if bd, ok := b[d]; d != "." && (!ok || !isDir(bd)) {
			continue // listed at the top of what was removed
		}
		changed[p] = 'D'
	}
	// Directories of both that hold a change are listed too.
	for p := range changed {
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			if _, listed := changed[d]; !listed && isDir(a[d]) && isDir(b[d]) {
				changed[d] = 'C'
			}
		}
	}
	var out []string
	for p, k := range changed {
		if p != "." {
			out = append(out, fmt.Sprintf("%c /%s", k, p))
		}
	}
	sort.Slice(out, func(i, j int) bool { return fltTreeLess(out[i][2:], out[j][2:]) })
	return out
}

// fltTreeLess orders paths depth first, names in byte order.
func fltTreeLess(a, b string) bool {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if as[i] != bs[i] {
			return as[i] < bs[i]
		}
	}
	return len(as) < len(bs)
}

func TestDiffEqualsUmociUnpacks(t *testing.T) {
	needRoot(t)
	needTool(t, "umoci")
	dir := fltImage(t)
	// amd64 against arm64: every layer differs, the same paths mostly.
	a := fltUmoci(t, dir, "v1", mutAMD64)
	b := fltUmoci(t, dir, "v1", mutARM64)
	amd := filepath.Join(t.TempDir(), "amd")
	arm := filepath.Join(t.TempDir(), "arm")
	strata(t, "copy", "--platform", "linux/amd64", "oci:"+dir+":v1", "oci:"+amd+":x")
	strata(t, "copy", "--platform", "linux/arm64", "oci:"+dir+":v1", "oci:"+arm+":x")
	got := fltChanges(strata(t, "diff", amd+":x", arm+":x"))
	want := fltTreeDiff(a, b)
	if len(want) == 0 {
		t.Fatal("the two umoci unpacks are the same")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("strata diff:\n%s\numoci unpacks differ in:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDiffBundle diffs an image against a bundle of it, on each driver:
// nothing for a fresh bundle, then what was changed in its rootfs.
func TestDiffBundle(t *testing.T) {
	needRoot(t)
	dir := fltImage(t)
	for _, driver := range []string{"vfs", "overlay"} {
		t.Run(driver, func(t *testing.T) { fltDiffBundle(t, dir, driver) })
	}
}

func fltDiffBundle(t *testing.T, dir, driver string) {
	work := t.TempDir()
	bundle := filepath.Join(work, "bundle")
	store := filepath.Join(work, "store")
	if driver == "overlay" {
		ovlUnmountCleanup(t, bundle)
	}
	strata(t, "unpack", "--root", store, "--driver", driver, "--platform", "linux/amd64", dir+":v1", bundle)
	if out := strata(t, "--root", store, "diff", "--platform", "linux/amd64", dir+":v1", bundle); out != "" {
		t.Fatalf("a fresh bundle differs from its image:\n%s", out)
	}
	rootfs := filepath.Join(bundle, "rootfs")
	before := layertest.DescribeTree(t, rootfs)
	layertest.Must(t, os.WriteFile(filepath.Join(rootfs, "etc", "added"), []byte("added\n"), 0o644))
	layertest.Must(t, os.RemoveAll(filepath.Join(rootfs, "home", "alice")))
	layertest.Must(t, os.Chmod(filepath.Join(rootfs, "usr", "bin", "sgid"), 0o755))
	got := fltChanges(strata(t, "--root", store, "diff", "--layer", "--platform", "linux/amd64", dir+":v1", bundle))
	want := fltTreeDiff(before, layertest.DescribeTree(t, rootfs))
	var kinds []string
	for _, l := range got {
		kp, lay, _ := strings.Cut(l, "\t")
		kinds = append(kinds, kp)
		if !strings.HasSuffix(kp, "/etc") && !strings.HasSuffix(kp, "/home") && !strings.HasSuffix(kp, "/usr") && !strings.HasSuffix(kp, "/usr/bin") && lay != "rootfs" {
			t.Errorf("%s: made by %q, want rootfs", kp, lay)
		}
	}
	if strings.Join(kinds, "\n") != strings.Join(want, "\n") {
		t.Errorf("strata diff IMAGE BUNDLE:\n%s\nwant:\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
}

func TestFlattenExportDiffErrors(t *testing.T) {
	dir := fltImage(t)
	flat := filepath.Join(t.TempDir(), "flat")
	strata(t, "copy", "--platform", "linux/amd64", "oci:"+dir+":v1", "oci:"+flat+":amd64")
	before := mutIndexState(t, dir)
	for _, args := range [][]string{
		{"flatten", "--platform", "linux/s390x", dir + ":v1"},
		{"flatten", "--compression", "bzip2", dir + ":v1"},
		{"flatten", dir + ":missing"},
		{"export", dir + ":v1", "-o", filepath.Join(t.TempDir(), "no", "such", "dir", "x.tar")},
		{"export", "docker://example.com/x:1"},
		{"export", "--platform", "linux/arm64", flat + ":amd64"}, // a single image of another platform
		{"diff", dir + ":v1", dir + ":missing"},
		{"diff", dir + ":v1"},
	} {
		r := strataFail(t, args...)
		if !strings.HasPrefix(r.Stderr, "strata: ") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("strata %s: stderr %q, want one line", strings.Join(args, " "), r.Stderr)
		}
	}
	if mutIndexState(t, dir) != before {
		t.Error("a failed command changed the layout")
	}
	// An export that fails leaves no file, and an existing one as it was.
	out := filepath.Join(t.TempDir(), "keep.tar")
	layertest.Must(t, os.WriteFile(out, []byte("old"), 0o644))
	strataFail(t, "export", dir+":missing", "-o", out)
	if b, _ := os.ReadFile(out); string(b) != "old" {
		t.Errorf("a failed export changed %s", out)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Errorf("a failed export left %v", ents)
	}
}

func TestFlattenArchive(t *testing.T) {
	dir := fltImage(t)
	work := t.TempDir()
	oa := filepath.Join(work, "img.tar")
	strata(t, "save", "--all-platforms", "--format", "oci-archive", "-o", oa, dir+":v1")
	want := strata(t, "export", "--platform", "linux/arm64", dir+":v1")
	if got := strata(t, "export", "--platform", "linux/arm64", "oci-archive:"+oa); got != want {
		t.Fatal("the archive exports another file system")
	}
	// In place: the archive is rewritten with the flattened index.
	strata(t, "flatten", "oci-archive:"+oa)
	out := filepath.Join(work, "out")
	strata(t, "load", oa, out)
	for _, p := range fltPlats {
		if n := len(mutRead(t, out, "v1", p).Manifest.Layers); n != 1 {
			t.Errorf("%s: %d layers in the flattened archive", platforms.Format(p), n)
		}
	}
	if got := strata(t, "export", "--platform", "linux/arm64", "oci-archive:"+oa); got != want {
		t.Error("the flattened archive exports another file system")
	}
	if ents, _ := os.ReadDir(work); len(ents) != 2 {
		t.Errorf("left beside the archive: %v", ents)
	}
}
