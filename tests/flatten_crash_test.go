package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/snapshot/layertest"
)

// flattenCrashCases are the crash suite's cases of flatten (in a layout:
// the name moves last) and export -o (the file appears whole, or not at
// all). Both are reproducible, so a run killed early and run again makes
// what an uninterrupted run makes.
func flattenCrashCases() []crashCase {
	srcLayout := func(t *testing.T, f *crashFixture, dir string) string {
		l := filepath.Join(dir, "l")
		strata(t, "copy", "--all", "oci:"+f.src, "oci:"+l)
		return l
	}
	exportState := func(t *testing.T, f *crashFixture, dir string) string {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Name() != "out.tar" {
				t.Fatalf("%s left beside the export", e.Name())
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "out.tar")); err != nil {
			return "none"
		}
		return layertest.FileSum(t, filepath.Join(dir, "out.tar"))
	}
	return []crashCase{
		{
			name: "flatten",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"flatten", srcLayout(t, f, dir) + ":app"}
			},
			check: func(t *testing.T, f *crashFixture, dir string) string {
				return crashLayoutState(t, f, filepath.Join(dir, "l"))
			},
			clean: func(t *testing.T, f *crashFixture, dir string) { crashLayoutClean(t, filepath.Join(dir, "l")) },
		},
		{
			name: "export",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				os.Remove(filepath.Join(dir, "out.tar"))
				return []string{"export", f.src + ":app", "-o", filepath.Join(dir, "out.tar")}
			},
			check: exportState,
			clean: func(t *testing.T, f *crashFixture, dir string) {
				if exportState(t, f, dir) == "none" {
					t.Error("a finished export left no file")
				}
			},
			rerunAfterSuccess: true,
		},
	}
}
