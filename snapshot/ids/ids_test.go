package ids

import (
	"errors"
	"testing"
)

func TestParseIDRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Range
		ok   bool
	}{
		{"0:100000:65536", Range{0, 100000, 65536}, true},
		{"1000:1000:1", Range{1000, 1000, 1}, true},
		{"0:100000:0", Range{}, false},
		{"0:100000", Range{}, false},
		{"a:1:1", Range{}, false},
		{"-1:1:1", Range{}, false},
		{"4294967295:0:2", Range{}, false},
		{"0:4294967295:1", Range{0, 4294967295, 1}, true},
	} {
		got, err := ParseRange(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRange(%q) = %+v, %v; want %+v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	m := &Map{UIDs: []Range{{0, 100000, 1000}, {1000, 200000, 10}}, GIDs: []Range{{0, 300000, 65536}}}
	for _, tc := range []struct{ uid, gid, hu, hg int }{{0, 0, 100000, 300000}, {999, 5, 100999, 300005}, {1005, 1005, 200005, 301005}} {
		hu, hg, err := m.ToHost(tc.uid, tc.gid)
		if err != nil || hu != tc.hu || hg != tc.hg {
			t.Errorf("ToHost(%d,%d) = %d,%d,%v", tc.uid, tc.gid, hu, hg, err)
		}
		u, g, err := m.ToContainer(hu, hg)
		if err != nil || u != tc.uid || g != tc.gid {
			t.Errorf("ToContainer(%d,%d) = %d,%d,%v", hu, hg, u, g, err)
		}
	}
	if _, _, err := m.ToHost(1010, 0); err == nil {
		t.Error("uid outside the map was shifted")
	}
}

func FuzzParseIDRange(f *testing.F) {
	for _, s := range []string{"0:100000:65536", "1:2", "a:b:c", "4294967295:0:1", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRange(s)
		if err != nil {
			return
		}
		if r.Size == 0 || uint64(r.ContainerID)+uint64(r.Size) > 1<<32 || uint64(r.HostID)+uint64(r.Size) > 1<<32 {
			t.Fatalf("ParseRange(%q) accepted %+v", s, r)
		}
		m := &Map{UIDs: []Range{r}, GIDs: []Range{r}}
		u, g, err := m.ToHost(int(r.ContainerID), int(r.ContainerID+r.Size-1))
		if err != nil {
			t.Fatal(err)
		}
		if cu, cg, err := m.ToContainer(u, g); err != nil || cu != int(r.ContainerID) || cg != int(r.ContainerID+r.Size-1) {
			t.Fatalf("round trip of %+v: %d,%d (%v)", r, cu, cg, err)
		}
	})
}

func TestValidateIDRanges(t *testing.T) {
	many := make([]Range, maxRanges+1)
	for i := range many {
		many[i] = Range{uint32(i), uint32(100000 + i), 1}
	}
	for _, tc := range []struct {
		name string
		rs   []Range
		ok   bool
	}{
		{"none", nil, true},
		{"one", []Range{{0, 100000, 65536}}, true},
		{"adjacent", []Range{{0, 100000, 10}, {10, 100010, 10}}, true},
		{"whole space", []Range{{0, 0, 1<<32 - 1}}, true},
		{"container overlap", []Range{{0, 100000, 10}, {9, 200000, 10}}, false},
		{"host overlap", []Range{{0, 100000, 10}, {100, 100009, 10}}, false},
		{"contained", []Range{{0, 100000, 100}, {10, 100010, 5}}, false},
		{"empty", []Range{{0, 100000, 0}}, false},
		{"overflow", []Range{{1<<32 - 1, 0, 2}}, false},
		{"too many", many, false},
		{"many enough", many[:maxRanges], true},
	} {
		err := ValidateRanges(tc.rs)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v is not ErrInvalid", tc.name, err)
		}
	}
}

// FuzzValidateIDRanges: a map that validates shifts every ID of its
// ranges to the host and back to itself.
func FuzzValidateIDRanges(f *testing.F) {
	f.Add(uint32(0), uint32(100000), uint32(65536), uint32(65536), uint32(200000), uint32(10))
	f.Add(uint32(0), uint32(0), uint32(10), uint32(5), uint32(20), uint32(10))
	f.Fuzz(func(t *testing.T, c1, h1, s1, c2, h2, s2 uint32) {
		rs := []Range{{c1, h1, s1}, {c2, h2, s2}}
		if ValidateRanges(rs) != nil {
			return
		}
		m := &Map{UIDs: rs, GIDs: rs}
		for _, r := range rs {
			for _, id := range []uint32{r.ContainerID, r.ContainerID + r.Size - 1} {
				u, g, err := m.ToHost(int(id), int(id))
				if err != nil {
					t.Fatalf("%v: %d: %v", rs, id, err)
				}
				bu, bg, err := m.ToContainer(u, g)
				if err != nil || bu != int(id) || bg != int(id) {
					t.Fatalf("%v: %d -> %d -> %d, %v", rs, id, u, bu, err)
				}
			}
		}
	})
}
