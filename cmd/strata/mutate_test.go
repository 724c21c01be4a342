package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
)

// Misuse of mutate, append and rebase: the exit code, one line naming
// what is wrong, the hint, and the layout as it was.
func TestImageChangeErrors(t *testing.T) {
	f := newFixture(t)
	notTar := filepath.Join(t.TempDir(), "notes")
	if err := os.WriteFile(notTar, []byte(strings.Repeat("not a tar\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(f.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []cliCase{
		{"mutate nothing", []string{"mutate", f.dir + ":v1"}, 2, []string{"nothing to change"}},
		{"mutate bad label", []string{"mutate", f.dir + ":v1", "--label", "x"}, 2, []string{"--label", `"x"`, "KEY=VALUE"}},
		{"mutate bad change", []string{"mutate", f.dir + ":v1", "-c", "RUN make"}, 2, []string{"RUN is not a valid change command"}},
		{"mutate two-line cmd", []string{"mutate", f.dir + ":v1", "--cmd", "a\nb"}, 2, []string{"one line"}},
		{"mutate bad created", []string{"mutate", f.dir + ":v1", "--created", "yesterday"}, 2, []string{"--created", "invalid time"}},
		{"mutate index annotation of a manifest", []string{"mutate", f.dir + ":v1", "--annotation", "index:a=b"}, 1, []string{"not an image index", "(index:KEY=VALUE annotations need an image index)"}},
		{"mutate missing platform", []string{"mutate", f.dir + ":multi", "--platform", "linux/s390x", "--user", "x"}, 1, []string{"no image for platform linux/s390x"}},
		{"mutate unknown ref", []string{"mutate", f.dir + ":nope", "--user", "x"}, 1, []string{f.dir + ":nope", "reference not found"}},
		{"mutate digest newref", []string{"mutate", f.dir + ":v1", "@" + f.v1.desc.Digest.String(), "--user", "x"}, 2, []string{"not a digest"}},
		{"mutate registry", []string{"mutate", "docker://example.com/x:1", "--user", "x"}, 2, []string{"docker://example.com/x:1", "layouts and archives"}},
		{"mutate stdin archive in place", []string{"mutate", "oci-archive:-", "--user", "x"}, 1, []string{"stdin", "(give NEWREF)"}},
		{"mutate archive to a bare name", []string{"mutate", "oci-archive:x.tar", "v2", "--user", "x"}, 2, []string{"v2", "name where the result goes"}},
		{"append bare newref", []string{"append", f.dir + ":v1", notTar, "v9"}, 2, []string{"v9", f.dir + ":v9"}},
		{"append not a tar", []string{"append", f.dir + ":v1", notTar}, 1, []string{notTar, "not a tar archive"}},
		{"append stdin twice", []string{"append", f.dir + ":v1", "-", "-"}, 2, []string{"twice"}},
		{"append bad compression", []string{"append", "--compression", "lz4", f.dir + ":v1", notTar}, 2, []string{"lz4"}},
		{"rebase without bases", []string{"rebase", f.dir + ":v1"}, 1, []string{"no base image", "(give --old-base and --new-base)"}},
		{"rebase not based on", []string{"rebase", f.dir + ":v1", "--old-base", f.dir + ":multi", "--new-base", f.dir + ":multi"}, 1, []string{"not based on", "layer 1 is sha256:", "(is --old-base the image it was built on?)"}},
		{"rebase base in SRC's layout", []string{"rebase", f.dir + ":v1", "--old-base", "multi", "--new-base", "docker.io/example/app:1"}, 1, []string{"not based on"}},
		{"rebase missing base", []string{"rebase", f.dir + ":v1", "--old-base", f.dir + ":nope", "--new-base", f.dir + ":multi"}, 1, []string{f.dir + ":nope"}},
	}
	runCLICases(t, tests)
	after, err := os.ReadFile(filepath.Join(f.dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Errorf("index.json changed")
	}
	mustStrata(t, "fsck", f.dir)
}

// A change in a layout: the name moves, NEWREF names the result instead,
// an image named by digest stays and the new one is added untagged.
func TestImageChangeNames(t *testing.T) {
	f := newFixture(t)
	l, err := layout.Open(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	resolve := func(ref string) string {
		d, err := l.Resolve(ref)
		if err != nil {
			t.Fatal(err)
		}
		return d.Digest.String()
	}
	out := strings.TrimSpace(mustStrata(t, "mutate", f.dir+":v1", "--label", "a=1"))
	if resolve("v1") != out || resolve("docker.io/example/app:1") != f.v1.desc.Digest.String() {
		t.Fatalf("v1 %s, printed %s; the other name must stay", resolve("v1"), out)
	}
	out2 := strings.TrimSpace(mustStrata(t, "mutate", "oci:"+f.dir+":v1", f.dir+":v1-b", "--label", "b=1"))
	if resolve("v1-b") != out2 || resolve("v1") != out {
		t.Fatalf("NEWREF: v1-b %s, printed %s", resolve("v1-b"), out2)
	}
	// The same layout spelt another way, with a transport prefix.
	out4 := strings.TrimSpace(mustStrata(t, "mutate", f.dir+":v1", "oci:"+f.dir+"/.:v1-d", "--label", "d=1"))
	if resolve("v1-d") != out4 || resolve("v1") != out {
		t.Fatalf("oci:SAME:NAME: v1-d %s, printed %s", resolve("v1-d"), out4)
	}
	out3 := strings.TrimSpace(mustStrata(t, "mutate", f.dir+":@"+out, "--label", "c=1"))
	if resolve("@"+out3) != out3 || resolve("v1") != out {
		t.Fatalf("by digest: a name moved")
	}
	// No change: same digest, nothing named anew.
	if got := strings.TrimSpace(mustStrata(t, "mutate", f.dir+":v1", "--label", "a=1")); got != out {
		t.Fatalf("a change to what is there printed %s, want %s", got, out)
	}
}
