package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// changeCrashCases are the crash suite's cases of mutate and append: in a
// layout (the name moves last) and on an archive in place (renamed over
// it when whole). Both are reproducible, so a run killed early and run
// again makes what an uninterrupted run makes.
func changeCrashCases() []crashCase {
	layoutCheck := func(t *testing.T, f *crashFixture, dir string) string {
		return crashLayoutState(t, f, filepath.Join(dir, "l"))
	}
	layoutClean := func(t *testing.T, f *crashFixture, dir string) {
		crashLayoutClean(t, filepath.Join(dir, "l"))
	}
	return []crashCase{
		{
			name: "append",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"append", "--timestamp", f.timestamp, f.freshLayout(t, filepath.Join(dir, "l")) + ":app", f.bigTar}
			},
			check: layoutCheck, clean: layoutClean,
		},
		{
			name: "mutate",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				return []string{"mutate", f.freshLayout(t, filepath.Join(dir, "l")) + ":app", "--label", "crash=1", "--env", "CRASH=1"}
			},
			check: layoutCheck, clean: layoutClean,
		},
		{
			name: "mutate-archive-in-place",
			prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
				b, err := os.ReadFile(f.newArchive)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "out.tar"), b, 0o644); err != nil {
					t.Fatal(err)
				}
				return []string{"mutate", "docker-archive:" + filepath.Join(dir, "out.tar"), "--label", "crash=1"}
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
		},
	}
}
