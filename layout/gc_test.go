package layout

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-oci/strata/internal/tempdir"
)

// gc removes the working directories of killed archive reads and
// conversions in the state directory, and keeps live ones and strata's
// own directories there.
func TestGCSweepsDeadWorkingDirs(t *testing.T) {
	l := initTest(t)
	state := filepath.Join(l.Dir(), StateDir)
	live, err := tempdir.Make(state, "archive-")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	dead := filepath.Join(state, "archive-123")
	if err := os.MkdirAll(filepath.Join(dead, "layout"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.PutBytes("application/octet-stream", []byte("x")); err != nil {
		t.Fatal(err)
	}
	res, err := l.GC(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Staging != 1 {
		t.Errorf("gc removed %d staging entries, want 1", res.Staging)
	}
	for p, want := range map[string]bool{dead: false, live.Path: true, filepath.Join(state, "seals"): true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
}

// gc removes the partial downloads a stopped pull kept: no pull can be
// writing one while gc holds the layout.
func TestGCRemovesPartials(t *testing.T) {
	l := initTest(t)
	dir := filepath.Join(l.Dir(), PartialDir, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "80770b2be0673a764e16dda235dae4c951b87a8d3e3bb26329a73bf98a7f180b")
	if err := os.WriteFile(p, []byte("half a layer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.GC(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("partial download kept after gc: %v", err)
	}
}
