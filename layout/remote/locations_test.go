package remote

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestLocationCache(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cache", "blob-locations")
	clock := time.Unix(1000, 0)
	open := func() *LocationCache {
		c := OpenLocationCache(p)
		c.now = func() time.Time { return clock }
		return c
	}
	d1, d2 := digest.FromString("one"), digest.FromString("two")

	a := open()
	a.record("reg:5000", "team/app", d1)
	clock = clock.Add(time.Second)
	a.record("reg:5000", "team/other", d1)
	a.record("reg:5000", "team/app", d2)
	a.record("elsewhere", "x", d1)
	a.record("reg:5000", "bad repo", d1) // never written: it would break the line format
	if got := a.candidates("reg:5000", d1, "team/new"); !slices.Equal(got, []string{"team/other", "team/app"}) {
		t.Fatalf("candidates, most recent first = %v", got)
	}
	if got := a.candidates("reg:5000", d1, "team/other"); !slices.Equal(got, []string{"team/app"}) {
		t.Fatalf("the destination itself is no candidate: %v", got)
	}
	// A second process records something else meanwhile; both survive.
	b := open()
	b.record("reg:5000", "team/third", d2)
	if err := b.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	c := open()
	if got := c.candidates("reg:5000", d2, ""); !slices.Equal(got, []string{"team/app", "team/third"}) {
		t.Fatalf("after two flushes: %v", got)
	}
	if got := c.candidates("elsewhere", d1, ""); !slices.Equal(got, []string{"x"}) {
		t.Fatalf("another registry: %v", got)
	}
	// Nothing recorded: nothing written.
	fi, _ := os.Stat(p)
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(p); !fi2.ModTime().Equal(fi.ModTime()) {
		t.Fatal("a flush with nothing new rewrote the file")
	}
	// A damaged file is an empty cache, and is replaced whole.
	if err := os.WriteFile(p, []byte("garbage\x00\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := open()
	if got := e.candidates("reg:5000", d1, ""); len(got) != 0 {
		t.Fatalf("damaged file gave %v", got)
	}
	e.record("reg:5000", "a", d1)
	if err := e.Flush(); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(p)
	if !strings.HasPrefix(string(b2), locationsHeader+"\n") || strings.Contains(string(b2), "garbage") {
		t.Fatalf("rewritten file:\n%s", b2)
	}
}

func TestLocationCacheBounded(t *testing.T) {
	m := map[location]int64{}
	for i := range 50 {
		m[location{"h", fmt.Sprintf("r%d", i), digest.FromString(fmt.Sprint(i))}] = int64(i)
	}
	out := map[location]int64{}
	parseLocations(formatLocations(m, 10), out)
	if len(out) != 10 {
		t.Fatalf("kept %d records, want 10", len(out))
	}
	for k, v := range out {
		if v < 40 || m[k] != v {
			t.Fatalf("kept %v at %d: not among the most recent", k, v)
		}
	}
}

func FuzzParseLocations(f *testing.F) {
	f.Add([]byte(locationsHeader + "\n1 h r " + digest.FromString("x").String() + "\n"))
	f.Add([]byte("x\n"))
	f.Add([]byte(locationsHeader + "\n-1 a b c d\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m := map[location]int64{}
		parseLocations(b, m)
		// What was read writes back and reads again the same.
		again := map[location]int64{}
		parseLocations(formatLocations(m, MaxLocations), again)
		if len(again) != len(m) {
			t.Fatalf("%d records read back as %d", len(m), len(again))
		}
	})
}
