package tempdir

import (
	"os"
	"testing"
)

func TestSweep(t *testing.T) {
	base := t.TempDir()
	live, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Remove()
	dead, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	dead.lock.Close() // its owner died: the directory stays, unlocked
	other, err := os.MkdirTemp(base, "other-")
	if err != nil {
		t.Fatal(err)
	}
	next, err := Make(base, "w-")
	if err != nil {
		t.Fatal(err)
	}
	defer next.Remove()
	for p, want := range map[string]bool{live.Path: true, dead.Path: false, other: true, next.Path: true} {
		_, err := os.Stat(p)
		if (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", p, err == nil, want)
		}
	}
	if err := next.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(next.Path); !os.IsNotExist(err) {
		t.Fatal("Remove left the directory")
	}
}
