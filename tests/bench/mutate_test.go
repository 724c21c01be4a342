package main

import (
	"strings"
	"testing"
	"time"
)

// A target of time is judged on strata's median alone.
func TestJudgeWithin(t *testing.T) {
	wl := &workload{Name: "m", Kind: "gzip", Sides: []side{{Label: "strata mutate", Role: roleStrata}}}
	for _, tc := range []struct {
		took time.Duration
		want string
	}{
		{20 * time.Millisecond, "| m/gzip | strata mutate under 50 ms | 20 ms | met |"},
		{80 * time.Millisecond, "| m/gzip | strata mutate under 50 ms | 80 ms | **missed** |"},
	} {
		res := []*result{{Side: &wl.Sides[0], Samples: []sample{{Wall: tc.took}}}}
		line, missed, _ := judge(workloadReport{WL: wl, Results: res}, target{Strata: "strata mutate", Within: 50 * time.Millisecond})
		if !strings.HasPrefix(line, tc.want) || missed != strings.Contains(tc.want, "missed") {
			t.Errorf("took %v: %q (missed %v), want %q", tc.took, line, missed, tc.want)
		}
	}
}
