package main

import (
	"os"
	"path/filepath"
	"testing"
)

// Misuse of flatten, export and diff: the exit code, one line naming
// what is wrong (and the hint), and the layout as it was.
func TestFlattenExportDiffErrors(t *testing.T) {
	f := newFixture(t)
	before, err := os.ReadFile(filepath.Join(f.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	noDir := filepath.Join(t.TempDir(), "no", "such", "x.tar")
	tests := []cliCase{
		{"flatten unknown ref", []string{"flatten", f.dir + ":nope"}, 1, []string{f.dir + ":nope", "reference not found"}},
		{"flatten bad compression", []string{"flatten", "--compression", "lz4", f.dir + ":v1"}, 2, []string{`"lz4"`}},
		{"flatten missing platform", []string{"flatten", "--platform", "linux/s390x", f.dir + ":multi"}, 1, []string{"linux/s390x"}},
		{"flatten registry", []string{"flatten", "docker://example.com/x:1"}, 2, []string{"docker://example.com/x:1", "layouts and archives"}},
		{"export registry", []string{"export", "docker://example.com/x:1"}, 1, []string{"docker://example.com/x:1", "(strata pull it into a layout first)"}},
		{"export unknown ref", []string{"export", f.dir + ":nope"}, 1, []string{f.dir + ":nope"}},
		{"export no directory", []string{"export", "-o", noDir, f.dir + ":v1"}, 1, []string{filepath.Dir(noDir)}},
		{"export two sources", []string{"export", f.dir + ":v1", f.dir + ":multi"}, 2, []string{"1 argument"}},
		{"export bad platform", []string{"export", "--platform", "bogus///", f.dir + ":v1"}, 2, []string{`"bogus///"`}},
		{"diff one side", []string{"diff", f.dir + ":v1"}, 2, []string{"2 argument"}},
		{"diff unknown ref", []string{"diff", f.dir + ":v1", f.dir + ":nope"}, 1, []string{f.dir + ":nope"}},
	}
	runCLICases(t, tests)
	after, err := os.ReadFile(filepath.Join(f.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("index.json changed")
	}
	if _, err := os.Stat(filepath.Dir(noDir)); !os.IsNotExist(err) {
		t.Errorf("a failed export made %s", filepath.Dir(noDir))
	}
}
