package mutate_test

import (
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
)

// FuzzParseSetting: a setting parses to what it says, or is refused;
// never a setting with an empty key.
func FuzzParseSetting(f *testing.F) {
	for _, s := range []string{"a=b", "a=", "a-", "-", "=", "a=b=c", "org.example/x-", "", "k\x00=v"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := mutate.ParseSetting(s)
		if err != nil {
			return
		}
		if got.Key == "" {
			t.Fatalf("%q: empty key", s)
		}
		want := got.Key + "=" + got.Value
		if got.Remove {
			want = got.Key + "-"
		}
		if want != s {
			t.Fatalf("%q parsed to %+v", s, got)
		}
	})
}

// FuzzMutateConfig: whatever config an image has (any JSON object) and
// whatever the changes, applying them fails or gives a config that
// parses, its rootfs untouched.
func FuzzMutateConfig(f *testing.F) {
	f.Add(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`, "LABEL a=b", "X=1", "")
	f.Add(`{"os":"linux","config":{"Env":["A=1","B"],"Labels":{"x":"y"}},"rootfs":{"diff_ids":[]},"history":[{}]}`, "ENV A=$A:2", "A-", "/srv")
	f.Add(`{"config":null,"rootfs":{"diff_ids":[]}}`, "ENTRYPOINT [\"a\"]", "=", "rel")
	f.Add(`{"config":{"Env":"not a list"},"rootfs":{"diff_ids":[]}}`, "", "Z=9", "")
	f.Fuzz(func(t *testing.T, config, change, env, workdir string) {
		before, err := layout.ParseImageConfig([]byte(config))
		if err != nil {
			return
		}
		cfg, err := layout.ParseConfig([]byte(config))
		if err != nil {
			return
		}
		ch := mutate.Changes{}
		if change != "" {
			ch.Dockerfile = strings.Split(change, "\n")
		}
		if s, err := mutate.ParseSetting(env); err == nil {
			ch.Env = []mutate.Setting{s}
			ch.Labels = []mutate.Setting{s}
		}
		if workdir != "" {
			ch.WorkingDir = &workdir
		}
		if ch.Check() != nil || ch.Apply(cfg) != nil {
			return
		}
		b, err := cfg.Bytes()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		after, err := layout.ParseImageConfig(b)
		if err != nil {
			t.Fatalf("the changed config does not parse: %v\n%s", err, b)
		}
		if len(after.RootFS.DiffIDs) != len(before.RootFS.DiffIDs) {
			t.Fatalf("rootfs changed")
		}
	})
}
