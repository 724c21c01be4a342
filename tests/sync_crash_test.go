package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// syncCrashCases are the crash suite's cases of sync and delta bundles:
// sync from a registry into a layout (what a killed run verified stays,
// the name comes last), sync of a layout into an archive (written whole
// or not at all), and load of a delta bundle into the layout holding its
// base (merged whole or not at all).
func syncCrashCases() []crashCase {
	layoutClean := func(t *testing.T, f *crashFixture, dir string) {
		crashLayoutClean(t, filepath.Join(dir, "l"))
	}
	return []crashCase{
		{
			name: "sync-to-layout",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				return []string{"sync", "docker://" + f.reg + "/crash/app:v1", l}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				l := filepath.Join(dir, "l")
				fsckClean(t, l)
				names := syncNames(t, l)
				if names["app"] != f.oldDigest || len(names) > 2 {
					t.Fatalf("names after a killed sync: %v", names)
				}
				// Absent, or the whole new image.
				return string(names[f.reg+"/crash/app:v1"])
			},
			clean: layoutClean, rerunAfterSuccess: true,
		},
		{
			name: "sync-to-archive",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"sync", "oci:" + f.src, "oci-archive:" + filepath.Join(dir, "out.tar")}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string { return crashArchiveState(t, dir) },
			clean: func(t *testing.T, f *crashFixture, dir string) {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.Contains(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".strata-sync-") {
						t.Errorf("%s left next to the archive", e.Name())
					}
				}
			},
			rerunAfterSuccess: true,
		},
		{
			name: "load-delta",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				// The far side holds the new image's big layer (as
				// "next"); the delta adds a small layer on top of it.
				l := f.freshLayout(t, filepath.Join(dir, "l"))
				strata(t, "copy", "oci:"+f.src+":app", "oci:"+l+":next")
				near := filepath.Join(dir, "near")
				strata(t, "copy", "oci:"+f.src+":app", "oci:"+near+":app")
				add := filepath.Join(dir, "add")
				if err := os.MkdirAll(add, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(add, "delta"), regRandomBytes(99, 256<<10), 0o644); err != nil {
					t.Fatal(err)
				}
				// The history names no path of this run: the same digest each time.
				strata(t, "append", "--timestamp", f.timestamp, "--created-by", "crash delta", near+":app", add)
				delta := filepath.Join(dir, "delta.tar")
				strata(t, "save", "--format", "oci-archive", "--since", l, "-o", delta, near+":app")
				return []string{"load", delta, l + ":app"}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				return crashLayoutState(t, f, filepath.Join(dir, "l"))
			},
			clean: layoutClean, rerunAfterSuccess: true,
		},
	}
}
