package userns

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseMap(t *testing.T) {
	tests := []struct {
		in   string
		want []Range
		bad  bool
	}{
		{in: "         0          0 4294967295\n", want: []Range{{0, 0, 4294967295}}},
		{in: "0 1001 1\n1 100000 65536\n", want: []Range{{0, 1001, 1}, {1, 100000, 65536}}},
		{in: "", want: nil},
		{in: "0 0\n", bad: true},
		{in: "0 x 1\n", bad: true},
		{in: "0 0 4294967296\n", bad: true},
	}
	for _, tc := range tests {
		got, err := ParseMap(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseMap(%q) succeeded", tc.in)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("ParseMap(%q) = %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSubIDs(t *testing.T) {
	file := `# comment
alice:100000:65536
bob:165536:65536
1002:231072:1000
alice:300000:10
broken:line
alice:x:1
alice:4294967295:2
alice:5:0
`
	tests := []struct {
		name string
		id   int
		want []SubRange
	}{
		{"alice", 1000, []SubRange{{100000, 65536}, {300000, 10}}},
		{"bob", 1001, []SubRange{{165536, 65536}}},
		{"carol", 1002, []SubRange{{231072, 1000}}},
		{"dave", 1003, nil},
	}
	for _, tc := range tests {
		got, err := ParseSubIDs(strings.NewReader(file), tc.name, tc.id)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v %v, want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestMappingRanges(t *testing.T) {
	if (Mapping{UIDs: []Range{{0, 1000, 1}}, GIDs: []Range{{0, 1000, 1}}}).Ranges() {
		t.Error("single mapping reported as ranges")
	}
	if !(Mapping{UIDs: []Range{{0, 1000, 1}, {1, 100000, 65536}}, GIDs: []Range{{0, 1000, 1}}}).Ranges() {
		t.Error("range mapping not reported")
	}
}

func TestInitialNamespace(t *testing.T) {
	m, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.UIDs) == 0 || len(m.GIDs) == 0 {
		t.Fatalf("empty mapping %v", m)
	}
	if Entered() {
		t.Error("Entered in a process strata did not start")
	}
}

func FuzzParseMap(f *testing.F) {
	f.Add("0 1000 1\n1 100000 65536\n")
	f.Add("  0 0 4294967295")
	f.Fuzz(func(t *testing.T, s string) {
		rs, err := ParseMap(s)
		if err != nil {
			return
		}
		for _, r := range rs {
			line := fmt.Sprintf("%d %d %d\n", r.Inside, r.Outside, r.Size)
			back, err := ParseMap(line)
			if err != nil || len(back) != 1 || back[0] != r {
				t.Fatalf("range %v does not round-trip: %v %v", r, back, err)
			}
		}
	})
}

func FuzzParseSubIDs(f *testing.F) {
	f.Add("alice:100000:65536\n", "alice")
	f.Add("1000:1:4294967295\n#x\n", "1000")
	f.Fuzz(func(t *testing.T, s, name string) {
		rs, err := ParseSubIDs(strings.NewReader(s), name, 1000)
		if err != nil {
			return
		}
		for _, r := range rs {
			if r.Count == 0 || uint64(r.Start)+uint64(r.Count) > 1<<32 {
				t.Fatalf("bad range %v from %q", r, s)
			}
		}
	})
}
