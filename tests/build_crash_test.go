package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildCrashCases are the crash suite's cases of strata build, with each
// driver: a killed build leaves the output layout and the build cache
// fsck-clean, and the next build succeeds and takes away what the killed
// one left (its working directory, its bundles' mounts).
func buildCrashCases() []crashCase {
	var out []crashCase
	for _, driver := range []string{"vfs", "overlay"} {
		out = append(out, buildCrashCase(driver))
	}
	return out
}

func buildCrashCase(driver string) crashCase {
	return crashCase{
		name: "build-" + driver,
		prepare: func(t *testing.T, f *crashFixture, dir string, _ int) []string {
			l := f.freshLayout(t, filepath.Join(dir, "l"))
			ctx := filepath.Join(dir, "ctx")
			if err := os.MkdirAll(ctx, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(ctx, "payload2"), f.payload, 0o644); err != nil {
				t.Fatal(err)
			}
			cf := "FROM " + f.src + ":app\nCOPY payload2 /payload2\nENV BUILT=1\nWORKDIR /made\n"
			if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(cf), 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"build", "--root", filepath.Join(dir, "store"), "--driver", driver, "--timestamp", f.timestamp, "-t", l + ":app", ctx}
		},
		check: func(t *testing.T, f *crashFixture, dir string) string {
			// A layout is one once its oci-layout marker is written, last;
			// a build killed before has none yet, and the next makes it.
			if cache := filepath.Join(dir, "store", "build", "cache"); fileExists(filepath.Join(cache, "oci-layout")) {
				if r := runCmd(t, nil, strataBin, "fsck", cache); r.Code != 0 {
					t.Fatalf("fsck of the build cache: %s%s", r.Stdout, r.Stderr)
				}
			}
			return crashLayoutState(t, f, filepath.Join(dir, "l"))
		},
		clean: func(t *testing.T, f *crashFixture, dir string) {
			crashLayoutClean(t, filepath.Join(dir, "l"))
			ents, _ := os.ReadDir(filepath.Join(dir, "store", "build"))
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "work-") {
					t.Errorf("a build's working directory %s is left after a complete build", e.Name())
				}
			}
			mounts, err := os.ReadFile("/proc/self/mounts")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(mounts), " "+dir+"/") {
				t.Errorf("a mount under %s is left after a complete build", dir)
			}
		},
		rerunAfterSuccess: true,
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
