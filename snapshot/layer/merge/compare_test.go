package merge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-oci/strata/snapshot/layer/merge"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// describeChanges renders changes one a line: kind, path, fields, layer.
func describeChanges(cs []merge.Change) []string {
	var out []string
	for _, c := range cs {
		s := fmt.Sprintf("%s %s", c.Kind, c.Path)
		if len(c.Fields) > 0 {
			s += " " + strings.Join(c.Fields, ",")
		}
		out = append(out, fmt.Sprintf("%s @%d", s, c.Layer))
	}
	return out
}

func TestCompare(t *testing.T) {
	F, D := layertest.File, layertest.Dir
	base := layertest.Standard(nil)
	later := layertest.Epoch.Add(time.Hour)
	touched := F("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644)
	touched.Mtime = later
	change := layertest.Tar(
		F("etc/group", "root:x:0:\nalice:x:1000:\nwheel:x:10:bobby\n", 0o644), // same size, other content
		layertest.Owned(F("etc/motd", "a longer motd\n", 0o644), 0, 10),       // size (app-link keeps the old one)
		touched, // mtime alone: no change
		layertest.Owned(F("app", "run me", 0o755), 7, 7),    // owner
		F("usr/bin/suid", "#!/bin/sh\n", 0o755),             // mode
		layertest.Symlink("etc/abs-link", "/usr/lib/other"), // link
		layertest.Whiteout("big"),                           // deleted (big-link stays)
		layertest.Whiteout("home"),                          // a deleted tree: listed once
		D("srv/new", 0o755), F("srv/new/f", "new", 0o644),   // added, with what is under it
		F("tmp", "no longer a dir", 0o644), // type
		layertest.WithXattrs(F("usr/lib/libc.so", "libc v2", 0o755), map[string]string{"user.x": "1"}),
	)
	ctx := context.Background()
	a, err := merge.Read(ctx, stack(base...), merge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := merge.Read(ctx, stack(append(base, change)...), merge.Options{Removals: true})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := merge.Compare(ctx, a, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"C app owner @3",
		"D big @3",
		"C etc @-1",
		"C etc/abs-link link @3",
		"C etc/group content @3",
		"C etc/motd size,content @3",
		"D home @3",
		"C srv @-1",
		"A srv/new @3",
		"A srv/new/f @3",
		"C tmp type @3",
		"C usr @-1",
		"C usr/bin @-1",
		"C usr/bin/suid mode @3",
		"C usr/lib @-1",
		"C usr/lib/libc.so xattrs @3",
	}
	got := describeChanges(cs)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Nothing differs from a tree to itself, and the reverse lists the
	// reverse kinds.
	if cs, err := merge.Compare(ctx, b, b); err != nil || len(cs) != 0 {
		t.Errorf("a tree against itself: %v, %v", describeChanges(cs), err)
	}
	rev, err := merge.Compare(ctx, b, a)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]merge.Kind{}
	for _, c := range rev {
		kinds[c.Path] = c.Kind
	}
	for p, k := range map[string]merge.Kind{"big": merge.Added, "home": merge.Added, "home/alice/notes": merge.Added, "srv/new": merge.Deleted, "etc/group": merge.Changed} {
		if kinds[p] != k {
			t.Errorf("reverse: %s is %q, want %q", p, kinds[p], k)
		}
	}
	if _, ok := kinds["srv/new/f"]; ok {
		t.Error("reverse lists what is under a deleted directory")
	}
}
