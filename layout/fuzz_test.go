package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var fuzzDigest = digest.FromString("fuzz").String()

func FuzzParseIndex(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"manifests":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + fuzzDigest + `","size":7,"platform":{"os":"linux","architecture":"arm64","variant":"v8"},"annotations":{"org.opencontainers.image.ref.name":"v1"}}],"x-extra":{"a":[1,2]}}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{"digest":"` + fuzzDigest + `","size":-1}]}`,
		`{"schemaVersion":1}`, `null`, `[]`, `{"manifests":{}}`, `{"schemaVersion":2,"manifests":[{"digest":"sha256:../x"}]}`,
		`{"schemaVersion":2,"subject":{"digest":"` + fuzzDigest + `","size":1},"artifactType":"x/y"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := ParseIndex(b)
		if err != nil {
			return
		}
		for _, m := range idx.Manifests {
			if m.Digest.Validate() != nil || m.Size < 0 {
				t.Fatalf("accepted bad descriptor %+v", m)
			}
		}
		out, err := json.Marshal(idx)
		if err != nil {
			t.Fatalf("marshal a parsed index: %v", err)
		}
		again, err := ParseIndex(out)
		if err != nil {
			t.Fatalf("re-parse %s: %v", out, err)
		}
		if len(again.Manifests) != len(idx.Manifests) || len(again.Extra) != len(idx.Extra) {
			t.Fatalf("round trip changed the index: %s", out)
		}
		sniffMediaType(b)
	})
}

func FuzzParseManifest(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + fuzzDigest + `","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + fuzzDigest + `","size":3}]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"` + fuzzDigest + `","size":2},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"` + fuzzDigest + `","size":3,"urls":["https://x"]}]}`,
		`{"schemaVersion":1,"fsLayers":[]}`, `{}`, `{"schemaVersion":2,"config":null}`, `{"schemaVersion":2,"layers":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		if m.Config.Digest.Validate() != nil {
			t.Fatalf("accepted a bad config descriptor %+v", m.Config)
		}
		for _, ly := range m.Layers {
			if ly.Digest.Validate() != nil || ly.Size < 0 {
				t.Fatalf("accepted a bad layer %+v", ly)
			}
		}
		if _, err := childrenOf(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest}, b); err != nil {
			t.Fatalf("children of a parsed manifest: %v", err)
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		`{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"],"Healthcheck":{"Test":["NONE"]}},"rootfs":{"type":"layers","diff_ids":["` + fuzzDigest + `"]},"history":[{"created_by":"x"}]}`,
		`{"config":null}`, `{"rootfs":null,"history":null}`,
		`{"author":"a & b <c>","config":{"Env":["X=a&b"], "Labels" : {"k":"<v>"}}}`, "{\"a\": [1,\n 2]}", `{"rootfs":{"diff_ids":"x"}}`, `{"history":{}}`, `{}`, `null`, `1`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseImageConfig(b)
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		// Unedited, the config keeps every field's bytes.
		same, err := c.Bytes()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var before, unedited map[string]json.RawMessage
		if json.Unmarshal(b, &before) != nil || json.Unmarshal(same, &unedited) != nil {
			t.Fatalf("config does not parse again: %s", same)
		}
		for k, v := range before {
			if !bytes.Equal(v, unedited[k]) {
				t.Fatalf("unedited field %s changed from %s to %s", k, v, unedited[k])
			}
		}
		// Edits either fail cleanly or give a config that parses again
		// with every field they did not touch unchanged, byte for byte.
		if err := c.SetRuntime("Cmd", []string{"true"}); err != nil {
			t.Fatal(err)
		}
		_ = c.AppendLayer(digest.FromString("layer"))
		_ = c.AppendHistory(ocispec.History{CreatedBy: "fuzz"})
		out, err := c.Bytes()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		var after map[string]json.RawMessage
		if json.Unmarshal(out, &after) != nil {
			t.Fatalf("edited config does not parse: %s", out)
		}
		for k, v := range before {
			switch k {
			case "config", "rootfs", "history":
				continue
			}
			if !bytes.Equal(v, after[k]) {
				t.Fatalf("field %s changed from %s to %s", k, v, after[k])
			}
		}
		var runBefore, runAfter map[string]json.RawMessage
		if json.Unmarshal(before["config"], &runBefore) == nil && json.Unmarshal(after["config"], &runAfter) == nil {
			for k, v := range runBefore {
				if k != "Cmd" && !bytes.Equal(v, runAfter[k]) {
					t.Fatalf("config field %s changed from %s to %s", k, v, runAfter[k])
				}
			}
		}
		if _, err := ParseConfig(out); err != nil {
			t.Fatalf("re-parse: %v", err)
		}
	})
}

func FuzzSplitRef(f *testing.F) {
	for _, s := range []string{
		"dir", "dir:v1", "dir:docker.io/library/debian:12", "dir:@" + fuzzDigest, "dir:name@" + fuzzDigest,
		":x", "dir:", "a:b:c", "dir:x//y", "dir:-x", "dir:a..b", "dir:\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dir, ref, err := SplitRef(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("error %v is not ErrInvalidRef", err)
			}
			return
		}
		if dir == "" || strings.Contains(dir, ":") {
			t.Fatalf("SplitRef(%q) gave dir %q", s, dir)
		}
		if ref != "" && checkLookupRef(ref) != nil {
			t.Fatalf("SplitRef(%q) gave invalid ref %q", s, ref)
		}
		if want := dir + ":" + ref; ref != "" && want != s {
			t.Fatalf("SplitRef(%q) lost characters: %q %q", s, dir, ref)
		}
	})
}

func FuzzValidateRef(f *testing.F) {
	for _, s := range []string{
		"v1", "1.0", "latest", "docker.io/library/debian:12", "localhost:5000/x/y:tag", "@" + fuzzDigest,
		"name@" + fuzzDigest, "", "/", "a/", "a b", "@sha256:", "_x", "x__y", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateRef(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("error %v is not ErrInvalidRef", err)
			}
			return
		}
		// A valid reference is safe to print and to store in index.json.
		for _, c := range s {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("ValidateRef accepted %q with byte %q", s, c)
			}
		}
		if d, ok := IsDigestRef(s); ok && d.Validate() != nil {
			t.Fatalf("ValidateRef accepted bad digest %q", s)
		}
		// Every written name is also a lookup name, with no separator
		// at either end of a component.
		if checkLookupRef(s) != nil {
			t.Fatalf("ValidateRef accepted %q, checkLookupRef did not", s)
		}
		if _, ok := IsDigestRef(s); !ok {
			for _, comp := range strings.Split(s, "/") {
				if comp == "" || !isAlnum(comp[0]) || !isAlnum(comp[len(comp)-1]) || strings.Contains(comp, "__") || strings.Contains(comp, "---") {
					t.Fatalf("ValidateRef accepted component %q of %q", comp, s)
				}
			}
		}
	})
}

// FuzzLookupName: any typed name resolves without panicking; a bare tag
// stored is only ever matched exactly; normalizing a normalized name
// changes nothing.
func FuzzLookupName(f *testing.F) {
	for _, s := range []string{"v1", "ov1", "ov1:latest", "docker.io/library/ov1:latest", "app", "org/app",
		"localhost/app", "x@" + fuzzDigest, "a:b:c", "//", "ov1@", "UPPER", "library/v1"} {
		f.Add(s)
	}
	idx := &Index{}
	for i, n := range []string{"v1", "docker.io/library/ov1:latest", "ov2:latest", "localhost/app:latest",
		"ghcr.io/org/app:latest", "docker.io/x/foo__bar:_tag", "latest"} {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{Digest: digest.FromString(fmt.Sprint(i)),
			Annotations: map[string]string{AnnotationRefName: n}})
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if n := NormalizeName(ref); n != "" && NormalizeName(n) != n {
			t.Fatalf("NormalizeName(%q) = %q, normalized again %q", ref, n, NormalizeName(n))
		}
		hits, step := lookupName(idx, ref, anyName)
		for _, h := range hits {
			if step != matchExact && IsBareTag(h.name) {
				t.Fatalf("%q matched the bare tag %q at step %d", ref, h.name, step)
			}
			if step == matchExact && h.name != ref {
				t.Fatalf("%q matched %q exactly", ref, h.name)
			}
		}
		if (step == matchNone) != (len(hits) == 0) {
			t.Fatalf("%q: step %d with %d hits", ref, step, len(hits))
		}
	})
}

// FuzzReferrerIndex stores a manifest or index and checks that the
// referrer scan never fails on it, and finds it as a referrer exactly
// when it has a subject with a valid digest.
func FuzzReferrerIndex(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"a/b","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + fuzzDigest + `","size":2},"layers":[],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + fuzzDigest + `","size":3},"annotations":{"k":"v"}}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"digest":"` + fuzzDigest + `","size":9}],"subject":{"digest":"` + fuzzDigest + `","size":1}}`,
		`{"schemaVersion":2,"subject":{"digest":"sha256:zz"}}`, `{"subject":null}`, `[]`, `{"manifests":[{"digest":"x"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		l := initTest(t)
		d, err := l.PutBytes(sniffMediaType(b), b)
		if err != nil {
			t.Fatal(err)
		}
		if d.MediaType == "" {
			d.MediaType = ocispec.MediaTypeImageManifest
		}
		ri, err := l.ReferrerIndexOf(context.Background(), []ocispec.Descriptor{d})
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		_, subject, perr := ReferrerDescriptor(d, b)
		want := perr == nil && subject != nil && subject.Digest.Validate() == nil && (IsManifest(d.MediaType) || IsIndex(d.MediaType))
		if _, got := ri.IsUntaggedReferrer(d.Digest); got != want {
			t.Fatalf("referrer %v, want %v for %s", got, want, b)
		}
	})
}

func FuzzParseCosignTag(f *testing.F) {
	for _, s := range []string{"sha256-" + digest.FromString("x").Encoded() + ".sig", "sha512-abc.att", "v1", "sha256-.sbom"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseCosignTag(s)
		if !ok {
			return
		}
		if d.Validate() != nil {
			t.Fatalf("%q gave invalid digest %q", s, d)
		}
		if !strings.HasPrefix(s, CosignTag(d, "")) || ValidateRef("repo:"+s) != nil {
			t.Fatalf("%q does not round trip (%s)", s, d)
		}
	})
}

func FuzzSniffFileType(f *testing.F) {
	for _, s := range []string{`{"spdxVersion":"x"}`, "hello", "\x1f\x8b\x08", "", "SPDXVersion: 2"} {
		f.Add("f.json", []byte(s))
	}
	f.Fuzz(func(t *testing.T, name string, head []byte) {
		if err := checkMediaType(SniffFileType(name, head)); err != nil {
			t.Fatalf("sniffed a bad media type: %v", err)
		}
	})
}

func FuzzParseIndexSelector(f *testing.F) {
	for _, s := range []string{"linux/arm64", "linux/arm/v7", "@" + digest.FromString("x").String(), digest.FromString("y").String(), "", "sha256:abc", "windows/amd64:10.0.1", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		x, err := parseIndexSelector(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidRef) {
				t.Fatalf("%q: error %v is not ErrInvalidRef", s, err)
			}
			return
		}
		switch {
		case x.d != "" && x.p == nil:
			if x.d.Validate() != nil {
				t.Fatalf("%q gave an invalid digest %q", s, x.d)
			}
		case x.d == "" && x.p != nil:
			if x.p.OS == "" || x.p.Architecture == "" {
				t.Fatalf("%q gave the platform %+v", s, *x.p)
			}
		default:
			t.Fatalf("%q gave digest %q and platform %v", s, x.d, x.p)
		}
	})
}
