package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	snapbundle "github.com/strata-oci/strata/snapshot/bundle"
)

// The crash suite kills each writing command with SIGKILL at points spread
// over its run and checks what is left: fsck clean, index.json readable,
// every name on the old or the new image, the command able to run again,
// and, after gc, no staging or temporary file. Kill points are times: a
// fraction of the command's own duration, measured first on the same
// setup. CI runs crashPointsDefault points per command; `make crash`
// (STRATA_CRASH_POINTS) runs many.

const crashPointsDefault = 3

func crashPoints(t *testing.T) int {
	t.Helper()
	if s := os.Getenv("STRATA_CRASH_POINTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("STRATA_CRASH_POINTS=%q: want a positive number", s)
		}
		return n
	}
	return crashPointsDefault
}

// crashFixture is what every case starts from: a layout holding the old
// image as "app", a source layout holding the new one as "app", the
// new image's tarball and archive.
type crashFixture struct {
	base, src          string // layouts
	oldDigest          digest.Digest
	newDigest          digest.Digest
	bigTar             string // the new image's rootfs tarball
	newArchive         string // docker-archive of the new image
	payload            []byte // the new image's /payload
	reg                string // host:port of a registry holding the new image as crash/app:v1
	created, timestamp string
}

// crashTar is a rootfs tarball with a payload of n pseudo-random bytes.
func crashTar(t *testing.T, payload []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		body []byte
	}{
		{"etc/os-release", []byte("ID=crash\n")},
		{"payload", payload},
	}
	if err := tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newCrashFixture(t *testing.T) *crashFixture {
	t.Helper()
	work := t.TempDir()
	f := &crashFixture{
		base: filepath.Join(work, "base"), src: filepath.Join(work, "src"),
		created: "2001-02-03T04:05:06Z", timestamp: "2001-02-03T04:05:06Z",
	}
	small := filepath.Join(work, "small.tar")
	if err := os.WriteFile(small, crashTar(t, []byte("old payload\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	f.payload = regRandomBytes(4242, 16<<20)
	f.bigTar = filepath.Join(work, "big.tar")
	if err := os.WriteFile(f.bigTar, crashTar(t, f.payload), 0o644); err != nil {
		t.Fatal(err)
	}
	f.oldDigest = digest.Digest(strings.TrimSpace(strata(t, "import", "--created", f.created, small, f.base+":app")))
	f.newDigest = digest.Digest(strings.TrimSpace(strata(t, "import", "--created", f.created, f.bigTar, f.src+":app")))
	f.newArchive = filepath.Join(work, "new.tar")
	strata(t, "save", "-o", f.newArchive, f.src+":app")
	reg := regStart(t, regConfig{})
	f.reg = reg.listen
	strata(t, "push", f.src+":app", f.reg+"/crash/app:v1")
	return f
}

// freshLayout makes a new layout holding what the base layout holds, as
// an earlier command would have left it.
func (f *crashFixture) freshLayout(t *testing.T, dir string) string {
	t.Helper()
	strata(t, "copy", "--all", "oci:"+f.base, "oci:"+dir)
	return dir
}

// crashCase is one writing command under the crash suite.
type crashCase struct {
	name string
	// prepare makes the state a run starts from in dir and returns the
	// command's arguments.
	prepare func(t *testing.T, f *crashFixture, dir string, point int) []string
	// check asserts what a killed (or finished) run left; it returns an
	// observation that must be the same for the measuring run and a
	// later complete run, or the old state's (see finished).
	check func(t *testing.T, f *crashFixture, dir string) string
	// finished checks the state after a complete run again and what no
	// temporary file may survive.
	clean func(t *testing.T, f *crashFixture, dir string)
	// rerunAfterSuccess: running the command again over its own finished
	// result is expected to succeed (unpack refuses a finished bundle).
	rerunAfterSuccess bool
}

// layoutState checks a layout after a kill: fsck clean, index.json
// parses, and "app" names the old image or whatever a complete run names
// (the observation returned).
func crashLayoutState(t *testing.T, f *crashFixture, dir string) string {
	t.Helper()
	if r := runCmd(t, nil, strataBin, "fsck", dir); r.Code != 0 {
		t.Fatalf("fsck %s: %s%s", dir, r.Stdout, r.Stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	var app []string
	for _, m := range idx.Manifests {
		switch m.Annotations[ocispec.AnnotationRefName] {
		case "app":
			app = append(app, m.Digest.String())
		case "", "next", "multi":
		default:
			if !strings.HasPrefix(m.Annotations[ocispec.AnnotationRefName], "t") {
				t.Fatalf("unexpected name %s", m.Annotations[ocispec.AnnotationRefName])
			}
		}
	}
	if len(app) != 1 {
		t.Fatalf("app names %d images", len(app))
	}
	return app[0]
}

// crashLayoutClean runs gc and checks that no staging or temporary file
// of any killed run is left.
func crashLayoutClean(t *testing.T, dir string) {
	t.Helper()
	strata(t, "gc", dir)
	strata(t, "fsck", dir)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("%s left in %s", e.Name(), dir)
		}
	}
	state := filepath.Join(dir, ".strata")
	ents, _ = os.ReadDir(state)
	for _, e := range ents {
		switch {
		case e.Name() == "staging" || e.Name() == "partial":
			_ = filepath.WalkDir(filepath.Join(state, e.Name()), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					t.Errorf("%s left after gc", p)
				}
				return nil
			})
		case e.IsDir() && e.Name() != "seals":
			t.Errorf("%s left in %s after gc", e.Name(), state)
		}
	}
}

// crashArchive checks an archive file after a kill: absent (nothing was
// there before), or whole; the observation is its digest.
func crashArchiveState(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "out.tar"))
	if os.IsNotExist(err) {
		return "absent"
	}
	if err != nil {
		t.Fatal(err)
	}
	// Whole: a loader reads it.
	l := filepath.Join(t.TempDir(), "check")
	strata(t, "load", filepath.Join(dir, "out.tar"), l)
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

func crashBundleState(t *testing.T, f *crashFixture, dir string) string {
	t.Helper()
	bundle := filepath.Join(dir, "bundle")
	ents, err := os.ReadDir(bundle)
	if os.IsNotExist(err) || (err == nil && len(ents) == 0) {
		return "absent"
	}
	if _, err := os.Lstat(filepath.Join(bundle, snapbundle.ProgressFile)); err == nil {
		return "absent" // a killed unpack's: the next one redoes it
	}
	rec, err := snapbundle.ReadRecord(bundle)
	if err != nil {
		t.Fatalf("bundle neither finished nor marked in progress: %v (holds %d entries)", err, len(ents))
	}
	got, err := os.ReadFile(filepath.Join(bundle, "rootfs", "payload"))
	if err != nil || !bytes.Equal(got, f.payload) {
		t.Fatalf("finished bundle's payload: %v", err)
	}
	return rec.Manifest.String()
}

func crashCases() []crashCase {
	layoutCheck := func(t *testing.T, f *crashFixture, dir string) string {
		return crashLayoutState(t, f, filepath.Join(dir, "l"))
	}
	layoutClean := func(t *testing.T, f *crashFixture, dir string) {
		crashLayoutClean(t, filepath.Join(dir, "l"))
	}
	return append([]crashCase{
		{
			name: "import",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"import", "--created", f.created, f.bigTar, f.freshLayout(t, filepath.Join(dir, "l")) + ":app"}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "copy-to-layout",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				return []string{"copy", "--compression", "zstd", "oci:" + f.src + ":app", "oci:" + l + ":app"}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "copy-to-archive",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"copy", "oci:" + f.src + ":app", "docker-archive:" + filepath.Join(dir, "out.tar") + ":crash/app:v1"}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string { return crashArchiveState(t, dir) },
			clean: func(t *testing.T, f *crashFixture, dir string) {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.Contains(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".strata-copy-") {
						t.Errorf("%s left next to the archive", e.Name())
					}
				}
			},
			rerunAfterSuccess: true,
		},
		{
			name: "load",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"load", f.newArchive, f.freshLayout(t, filepath.Join(dir, "l")) + ":app"}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "attach",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				return []string{"attach", "--artifact-type", "application/vnd.example.payload", "--created", f.created, l + ":app", f.bigTar}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "index-add",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				strata(t, "index", "create", l+":multi", l+":app")
				// The new build of the platform replaces the old one.
				return []string{"index", "add", l + ":multi", f.src + ":app"}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				l := filepath.Join(dir, "l")
				app := crashLayoutState(t, f, l)
				// The index changes whole or not at all.
				multi := ""
				if r := runCmd(t, nil, strataBin, "inspect", "--raw", "index", l+":multi"); r.Code == 0 {
					multi = digest.FromString(r.Stdout).String()
				}
				return app + " " + multi
			},
			clean: layoutClean,
		},
		{
			name: "tag",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				strata(t, "copy", "oci:"+f.src+":app", "oci:"+l+":next")
				args := []string{"tag", l + ":next", "app"}
				for i := range 200 {
					args = append(args, fmt.Sprintf("t%d", i))
				}
				return args
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				l := filepath.Join(dir, "l")
				app := crashLayoutState(t, f, l)
				// The names of one tag command appear together.
				n := len(names(t, l))
				if n != 2 && n != 202 {
					t.Fatalf("%d names after a killed tag", n)
				}
				return app
			},
			clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "commit",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				bundle := filepath.Join(dir, "bundle")
				strata(t, "unpack", "--root", filepath.Join(dir, "store"), l+":app", bundle)
				if err := os.WriteFile(filepath.Join(bundle, "rootfs", "payload"), f.payload, 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{"commit", "--timestamp", f.timestamp, bundle, l + ":app"}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				if _, err := snapbundle.ReadRecord(filepath.Join(dir, "bundle")); err != nil {
					t.Fatalf("bundle after a killed commit: %v", err)
				}
				return layoutCheck(t, f, dir)
			},
			clean: layoutClean,
		},
		{
			name: "unpack",
			prepare: func(t *testing.T, f *crashFixture, dir string, point int) []string {
				driver := "vfs"
				if point%2 == 1 {
					driver = "overlay"
				}
				t.Cleanup(func() { unmountUnder(dir) })
				return []string{"unpack", "--driver", driver, "--root", filepath.Join(dir, "store"), f.src + ":app", filepath.Join(dir, "bundle")}
			},
			check: crashBundleState,
			clean: func(t *testing.T, f *crashFixture, dir string) {
				store := filepath.Join(dir, "store")
				strata(t, "snapshots", "gc", "--root", store)
				if ents, _ := os.ReadDir(filepath.Join(store, "tmp")); len(ents) != 0 {
					t.Errorf("%d entries left in the store's tmp/", len(ents))
				}
				if _, err := os.Lstat(filepath.Join(dir, "bundle", snapbundle.ProgressFile)); err == nil {
					t.Error("the bundle is still marked in progress")
				}
			},
		},
		{
			name: "gc",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				// Blobs to collect: written, never named.
				ll, err := layout.Open(l)
				if err != nil {
					t.Fatal(err)
				}
				defer ll.Close()
				for i := range 150 {
					if _, err := ll.PutBytes("application/octet-stream", regRandomBytes(uint64(i), 8<<10)); err != nil {
						t.Fatal(err)
					}
				}
				return []string{"gc", l}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "pull",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"pull", f.reg + "/crash/app:v1", f.freshLayout(t, filepath.Join(dir, "l")) + ":app"}
			},
			check: layoutCheck, clean: layoutClean, rerunAfterSuccess: true,
		},
	}, append(append(changeCrashCases(), append(flattenCrashCases(), buildCrashCases()...)...), syncCrashCases()...)...)
}

// runKilled starts strata with args, kills it with SIGKILL after delay and
// reports whether it had finished (exit 0) by then.
func runKilled(t *testing.T, args []string, delay time.Duration) (finished bool) {
	t.Helper()
	cmd := exec.Command(strataBin, append([]string{"--quiet"}, args...)...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("strata %s failed before it was killed: %v: %s", strings.Join(args, " "), err, errb.String())
		}
		return true
	case <-time.After(delay):
	}
	_ = cmd.Process.Kill()
	return <-done == nil
}

func TestCrashSuite(t *testing.T) {
	needRoot(t)
	f := newCrashFixture(t)
	points := crashPoints(t)
	for _, c := range crashCases() {
		t.Run(c.name, func(t *testing.T) {
			// The command's duration and outcome, uninterrupted.
			dir := t.TempDir()
			args := c.prepare(t, f, dir, 0)
			start := time.Now()
			strata(t, args...)
			took := time.Since(start)
			want := c.check(t, f, dir)
			c.clean(t, f, dir)
			t.Logf("%s takes %v; killing it at %d points", c.name, took, points)
			early := 0
			defer func() { t.Logf("%d of %d kills landed before %s finished", early, points, c.name) }()
			for p := range points {
				dir := t.TempDir()
				args := c.prepare(t, f, dir, p)
				before := c.check(t, f, dir)
				delay := time.Duration(float64(took) * (float64(p) + 0.5) / float64(points))
				finished := runKilled(t, args, delay)
				if !finished {
					early++
				}
				got := c.check(t, f, dir)
				if got != before && got != want {
					t.Fatalf("killed at %v: state %s is neither the old (%s) nor the new (%s)", delay, got, before, want)
				}
				// A run killed after its last step (the name moved) is
				// done too: a command that is not idempotent (flatten,
				// append) run again would change the new image.
				if (finished || (got == want && got != before)) && !c.rerunAfterSuccess {
					continue
				}
				if r := runCmd(t, nil, strataBin, append([]string{"--quiet"}, args...)...); r.Code != 0 {
					t.Fatalf("killed at %v, the same command again: exit %d: %s", delay, r.Code, r.Stderr)
				}
				if got := c.check(t, f, dir); got != want {
					t.Fatalf("killed at %v, then run again: state %s, want %s", delay, got, want)
				}
				c.clean(t, f, dir)
			}
		})
	}
}
