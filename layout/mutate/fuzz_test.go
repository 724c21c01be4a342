package mutate_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
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
// whatever the changes, Mutate either refuses or stores an image whose
// config parses and whose layers are those it had.
func FuzzMutateConfig(f *testing.F) {
	f.Add(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`, "LABEL a=b", "X=1", "")
	f.Add(`{"os":"linux","config":{"Env":["A=1","B"],"Labels":{"x":"y"}},"rootfs":{"diff_ids":[]},"history":[{}]}`, "ENV A=$A:2", "A-", "/srv")
	f.Add(`{"config":null,"rootfs":{"diff_ids":[]}}`, "ENTRYPOINT [\"a\"]", "=", "rel")
	f.Add(`{"config":{"Env":"not a list"},"rootfs":{"diff_ids":[]}}`, "", "Z=9", "")
	f.Fuzz(func(t *testing.T, config, change, env, workdir string) {
		dir := filepath.Join(t.TempDir(), "l")
		l, err := layout.Init(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := layout.ParseImageConfig([]byte(config)); err != nil {
			return
		}
		cd, err := l.PutBytes(ocispec.MediaTypeImageConfig, []byte(config))
		if err != nil {
			t.Fatal(err)
		}
		md, err := l.PutJSON(ocispec.MediaTypeImageManifest, ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: []ocispec.Descriptor{}})
		if err != nil {
			t.Fatal(err)
		}
		ch := mutate.Changes{}
		if change != "" {
			ch.Dockerfile = strings.Split(change, "\n")
		}
		if s, err := mutate.ParseSetting(env); err == nil {
			ch.Env = []mutate.Setting{s}
		}
		if workdir != "" {
			ch.WorkingDir = &workdir
		}
		res, err := mutate.Mutate(context.Background(), l, md, ch, nil)
		if err != nil {
			return
		}
		img, err := l.ReadImage(res.Root)
		if err != nil {
			t.Fatalf("the mutated image does not read back: %v", err)
		}
		if len(img.Manifest.Layers) != 0 {
			t.Fatalf("layers changed")
		}
	})
}
