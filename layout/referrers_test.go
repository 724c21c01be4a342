package layout

import (
	"context"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fileOf is an artifact file with content s.
func fileOf(name, mediaType, s string) ArtifactFile {
	return ArtifactFile{Name: name, MediaType: mediaType, Open: func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(s)), nil
	}}
}

func attach(t testing.TB, l *Layout, subject ocispec.Descriptor, artifactType string, files ...ArtifactFile) ocispec.Descriptor {
	t.Helper()
	d, err := l.Attach(context.Background(), subject, AttachOptions{ArtifactType: artifactType, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func referrerDigests(rs []Referrer) []digest.Digest {
	var out []digest.Digest
	for _, r := range rs {
		out = append(out, r.Descriptor.Digest)
	}
	slices.Sort(out)
	return out
}

func sortedDigests(ds ...digest.Digest) []digest.Digest {
	out := slices.Clone(ds)
	slices.Sort(out)
	return out
}

// An attached artifact is an image-spec 1.1 manifest stored as an
// untagged index.json entry in the referrers API's form, and is found as
// a referrer of its subject.
func TestAttachStoresReferrer(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	img := addImage(t, l, "linux/amd64", "a")
	if err := l.Tag(img, "v1"); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sbom, err := l.Attach(ctx, img, AttachOptions{
		ArtifactType: "application/spdx+json",
		Annotations:  map[string]string{"org.example.k": "v"},
		Files:        []ArtifactFile{fileOf("dir/sbom.json", "", `{"spdxVersion":"SPDX-2.3"}`)},
		Created:      created,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sbom.ArtifactType != "application/spdx+json" || sbom.Annotations["org.example.k"] != "v" ||
		sbom.Annotations[ocispec.AnnotationCreated] != "2026-01-02T03:04:05Z" {
		t.Errorf("descriptor %+v", sbom)
	}
	idx, err := l.Index()
	if err != nil {
		t.Fatal(err)
	}
	var entry *ocispec.Descriptor
	for i, m := range idx.Manifests {
		if m.Digest == sbom.Digest {
			entry = &idx.Manifests[i]
		}
	}
	if entry == nil || entry.Annotations[AnnotationRefName] != "" || entry.ArtifactType != "application/spdx+json" {
		t.Fatalf("index.json entry %+v", entry)
	}
	b, err := l.ReadBlob(sbom, MaxManifestSize)
	if err != nil {
		t.Fatal(err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m.Subject == nil || m.Subject.Digest != img.Digest || m.Config.MediaType != MediaTypeEmptyJSON || len(m.Layers) != 1 ||
		m.Layers[0].MediaType != "application/spdx+json" || m.Layers[0].Annotations[ocispec.AnnotationTitle] != "sbom.json" {
		t.Errorf("manifest %s", b)
	}
	refs, err := l.Referrers(ctx, img.Digest, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 1 || refs[0].Descriptor.Digest != sbom.Digest || refs[0].Subject != img.Digest {
		t.Fatalf("referrers %+v", refs)
	}
	if refs, _ := l.Referrers(ctx, img.Digest, "application/other"); len(refs) != 0 {
		t.Errorf("filtered by type: %+v", refs)
	}
	// The layout's only image is still the image, not its SBOM.
	if d, err := l.Resolve(""); err != nil || d.Digest != img.Digest {
		t.Errorf("Resolve(\"\") = %v, %v", d.Digest, err)
	}
	mustFsckClean(t, l)
}

// An artifact with no files has the one empty layer; a bad artifact type
// or a subject that is not in the layout is refused and stores nothing.
func TestAttachRefuses(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	img := addImage(t, l, "linux/amd64", "a")
	d := attach(t, l, img, "application/vnd.example.note")
	b, _ := l.ReadBlob(d, MaxManifestSize)
	var m ocispec.Manifest
	_ = json.Unmarshal(b, &m)
	if len(m.Layers) != 1 || m.Layers[0].Digest != ocispec.DescriptorEmptyJSON.Digest {
		t.Errorf("layers %+v", m.Layers)
	}
	before := blobList(t, l)
	for _, tc := range []struct {
		subject ocispec.Descriptor
		o       AttachOptions
	}{
		{img, AttachOptions{}},
		{img, AttachOptions{ArtifactType: "not a type"}},
		{img, AttachOptions{ArtifactType: "a/b", Files: []ArtifactFile{fileOf("f", "bad", "x")}}},
		{ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("nope"), Size: 4}, AttachOptions{ArtifactType: "a/b"}},
	} {
		if _, err := l.Attach(ctx, tc.subject, tc.o); err == nil {
			t.Errorf("Attach(%+v) succeeded", tc.o)
		}
	}
	if after := blobList(t, l); !slices.Equal(before, after) {
		t.Errorf("blobs changed: %v -> %v", before, after)
	}
}

// Referrers of referrers, of the platform manifests of an index, of
// regclient's fallback-tag index and cosign's tags are all found, and
// Closure lists each once.
func TestReferrerIndexForms(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	amd := addImage(t, l, "linux/amd64", "a")
	arm := addImage(t, l, "linux/arm64", "b")
	ix := addIndex(t, l, amd, arm)
	if err := l.Tag(ix, "multi"); err != nil {
		t.Fatal(err)
	}
	sig := attach(t, l, ix, "application/vnd.example.signature")
	sigOfSig := attach(t, l, sig, "application/vnd.example.signature")
	armSBOM := attach(t, l, arm, "application/spdx+json")

	// regclient's form: an index under the fallback tag listing a
	// referrer that has no entry of its own.
	other := addImage(t, l, "linux/amd64", "c")
	if err := l.Tag(other, "other"); err != nil {
		t.Fatal(err)
	}
	rcRef := artifactManifest(t, l, other, "application/vnd.example.rc")
	rcIndex := addIndex(t, l, rcRef)
	if err := l.Tag(rcIndex, "sha256-"+other.Digest.Encoded()); err != nil {
		t.Fatal(err)
	}
	// cosign's form: a tag naming the subject's digest.
	cosign := addImage(t, l, "linux/amd64", "cosign payload")
	if err := l.Tag(cosign, "example.com/app:"+CosignTag(other.Digest, ".sig")); err != nil {
		t.Fatal(err)
	}

	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := referrerDigests(ri.Of(ix.Digest, "")); !slices.Equal(got, []digest.Digest{sig.Digest}) {
		t.Errorf("referrers of the index: %v", got)
	}
	all, err := ri.Closure(ctx, ix)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := referrerDigests(all), sortedDigests(sig.Digest, sigOfSig.Digest, armSBOM.Digest); !slices.Equal(got, want) {
		t.Errorf("closure %v, want %v", got, want)
	}
	refs := ri.Of(other.Digest, "")
	if len(refs) != 2 {
		t.Fatalf("referrers of other: %+v", refs)
	}
	for _, r := range refs {
		switch r.Descriptor.Digest {
		case rcRef.Digest:
			if r.Tag != "" || r.Descriptor.ArtifactType != "application/vnd.example.rc" {
				t.Errorf("regclient referrer %+v", r)
			}
		case cosign.Digest:
			if r.Tag != CosignTag(other.Digest, ".sig") {
				t.Errorf("cosign referrer %+v", r)
			}
		default:
			t.Errorf("unexpected referrer %+v", r)
		}
	}
}

// artifactManifest stores (without recording it) a manifest with subject
// whose artifact type is its config's media type, as older tools write.
func artifactManifest(t testing.TB, l *Layout, subject ocispec.Descriptor, configType string) ocispec.Descriptor {
	t.Helper()
	cfg, err := l.PutBytes(configType, []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	s := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{ocispec.DescriptorEmptyJSON}, Subject: &s}
	if _, err := l.PutBytes(MediaTypeEmptyJSON, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	d, err := l.PutJSON(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// CopyImage with Referrers copies the referrers of what it copies (of the
// one platform selected, not of the others), and Record names the image
// and records them in one update.
func TestCopyImageReferrers(t *testing.T) {
	ctx := context.Background()
	src := initTest(t)
	amd := addImage(t, src, "linux/amd64", "a")
	arm := addImage(t, src, "linux/arm64", "b")
	ix := addIndex(t, src, amd, arm)
	if err := src.Tag(ix, "example.com/app:v1"); err != nil {
		t.Fatal(err)
	}
	sig := attach(t, src, ix, "application/vnd.example.signature")
	amdSBOM := attach(t, src, amd, "application/spdx+json", fileOf("s.json", "", `{"spdxVersion":"SPDX-2.3"}`))
	armSBOM := attach(t, src, arm, "application/spdx+json")
	cosign := addImage(t, src, "linux/amd64", "sig payload")
	if err := src.Tag(cosign, "example.com/app:"+CosignTag(ix.Digest, ".sig")); err != nil {
		t.Fatal(err)
	}

	dst := initTest(t)
	set := &ReferrerSet{}
	d, err := CopyImage(ctx, dst, src, ix, CopyOptions{AllPlatforms: true, Referrers: set})
	if err != nil {
		t.Fatal(err)
	}
	refs := set.Take()
	if got, want := referrerDigests(refs), sortedDigests(sig.Digest, amdSBOM.Digest, armSBOM.Digest, cosign.Digest); !slices.Equal(got, want) {
		t.Fatalf("copied referrers %v, want %v", got, want)
	}
	if err := dst.Record(d, []string{"registry.test/app:v1"}, refs); err != nil {
		t.Fatal(err)
	}
	got := names(t, dst)
	want := []string{"registry.test/app:" + CosignTag(ix.Digest, ".sig"), "registry.test/app:v1"}
	if !slices.Equal(got[:2], want) || len(got) != 5 {
		t.Errorf("names %v, want %v and three untagged", got, want)
	}
	mustFsckClean(t, dst)
	if rs, _ := dst.Referrers(ctx, amd.Digest, ""); len(rs) != 1 || rs[0].Descriptor.Digest != amdSBOM.Digest {
		t.Errorf("dst referrers of amd64: %+v", rs)
	}

	// One platform: only its referrers come.
	dst2 := initTest(t)
	set2 := &ReferrerSet{}
	p := mustPlatform(t, "linux/arm64")
	d2, err := CopyImage(ctx, dst2, src, ix, CopyOptions{Platforms: []ocispec.Platform{p}, Referrers: set2})
	if err != nil {
		t.Fatal(err)
	}
	if d2.Digest != arm.Digest {
		t.Fatalf("copied %s, want arm64's manifest", d2.Digest)
	}
	if got := referrerDigests(set2.Take()); !slices.Equal(got, []digest.Digest{armSBOM.Digest}) {
		t.Errorf("one platform's referrers: %v", got)
	}
	// Without Referrers none come.
	dst3 := initTest(t)
	if _, err := CopyImage(ctx, dst3, src, ix, CopyOptions{AllPlatforms: true}); err != nil {
		t.Fatal(err)
	}
	if dst3.Blobs().Has(sig.Digest, sig.Size) {
		t.Error("a referrer was copied without Referrers")
	}
}

// gc keeps the referrers of every kept image, and removes an untagged
// referrer (with its own referrers) once its subject is gone; a named one
// stays.
func TestGCReferrers(t *testing.T) {
	ctx := context.Background()
	l := initTest(t)
	img := addImage(t, l, "linux/amd64", "a")
	if err := l.Tag(img, "v1"); err != nil {
		t.Fatal(err)
	}
	sbom := attach(t, l, img, "application/spdx+json", fileOf("s.json", "", `{"spdxVersion":"SPDX-2.3"}`))
	sigOfSBOM := attach(t, l, sbom, "application/vnd.example.signature")
	cosign := addImage(t, l, "linux/amd64", "payload")
	if err := l.Tag(cosign, CosignTag(img.Digest, ".sig")); err != nil {
		t.Fatal(err)
	}
	res, err := l.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 0 || len(res.Referrers) != 0 {
		t.Fatalf("gc of a whole layout removed %v and referrers %v", res.Removed, res.Referrers)
	}
	mustFsckClean(t, l)

	if err := l.Untag("v1"); err != nil {
		t.Fatal(err)
	}
	// The image's blobs are there until gc: nothing dangles yet.
	mustFsckClean(t, l)
	res, err = l.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.Referrers, sortedDigests(sbom.Digest, sigOfSBOM.Digest); !slices.Equal(got, want) {
		t.Errorf("gc dropped referrers %v, want %v", got, want)
	}
	for _, d := range []ocispec.Descriptor{img, sbom, sigOfSBOM} {
		if l.Blobs().Has(d.Digest, d.Size) {
			t.Errorf("%s is still there", d.Digest)
		}
	}
	if !l.Blobs().Has(cosign.Digest, cosign.Size) {
		t.Error("the named cosign signature was removed")
	}
	if got := names(t, l); !slices.Equal(got, []string{CosignTag(img.Digest, ".sig")}) {
		t.Errorf("names after gc: %v", got)
	}
	// The cosign signature's subject is gone: a warning, not damage.
	probs, err := l.Fsck(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 1 || !probs[0].Warning || Damaged(probs) != 0 || !strings.Contains(probs[0].Err, img.Digest.String()) {
		t.Errorf("fsck after gc: %v", probs)
	}
}

// AddReferrers names cosign's artifacts in the repository of each name
// of their image, or by their bare tag, and records the others untagged
// once.
func TestIndexAddReferrers(t *testing.T) {
	sub := digest.FromString("subject")
	sig := Referrer{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("sig"), Size: 3}, Subject: sub, Tag: CosignTag(sub, ".sig")}
	sbom := Referrer{Descriptor: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("sbom"), Size: 4, ArtifactType: "application/spdx+json"}, Subject: sub}
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{nil, []string{sig.Tag, ""}},
		{[]string{"v1"}, []string{sig.Tag, ""}},
		{[]string{"localhost:5000/a/b:v1", "localhost:5000/a/b:latest", "other/c@" + sub.String()}, []string{"localhost:5000/a/b:" + sig.Tag, "other/c:" + sig.Tag, ""}},
	} {
		idx := newIndex()
		idx.AddReferrers(tc.names, []Referrer{sig, sbom})
		idx.AddReferrers(tc.names, []Referrer{sig, sbom})
		var got []string
		for _, m := range idx.Manifests {
			got = append(got, m.Annotations[AnnotationRefName])
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) {
			t.Errorf("names %v: entries %q, want %q", tc.names, got, tc.want)
		}
	}
}

func TestCosignTag(t *testing.T) {
	d := digest.FromString("x")
	for _, suffix := range CosignSuffixes {
		got, ok := ParseCosignTag(CosignTag(d, suffix))
		if !ok || got != d {
			t.Errorf("%s: %v %v", suffix, got, ok)
		}
	}
	for _, s := range []string{"sha256-" + d.Encoded(), "sha256-abc.sig", "md5-" + d.Encoded() + ".sig", "v1", "sha256-" + d.Encoded() + ".sig.x"} {
		if _, ok := ParseCosignTag(s); ok {
			t.Errorf("%q parsed as a cosign tag", s)
		}
	}
}

func TestSniffFileType(t *testing.T) {
	tarHead := make([]byte, 512)
	copy(tarHead[257:], "ustar")
	for _, tc := range []struct {
		name string
		head []byte
		want string
	}{
		{"sbom.spdx.json", []byte(`{"spdxVersion": "SPDX-2.3", "name": "x"}`), "application/spdx+json"},
		{"bom.json", []byte(`{"bomFormat": "CycloneDX", "specVersion": "1.5"}`), "application/vnd.cyclonedx+json"},
		{"att.json", []byte(`{"_type": "https://in-toto.io/Statement/v1", "subject": []}`), "application/vnd.in-toto+json"},
		{"env.json", []byte(`{"payloadType": "x", "payload": "", "signatures": []}`), "application/vnd.dsse.envelope.v1+json"},
		{"x.json", []byte(`{"a": 1}`), "application/json"},
		{"x.gz", []byte{0x1f, 0x8b, 8, 0}, "application/gzip"},
		{"x.tar", tarHead, "application/x-tar"},
		{"notes.txt", []byte("hello\nworld\n"), "text/plain"},
		{"sbom.spdx", []byte("SPDXVersion: SPDX-2.3\n"), "text/spdx"},
		{"bin", []byte{0, 1, 2, 3}, "application/octet-stream"},
		{"empty", nil, "application/octet-stream"},
	} {
		if got := SniffFileType(tc.name, tc.head); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

// A referrer blob that is missing makes a copy with Referrers fail
// naming it, and takes back what the copy added.
func TestCopyImageMissingReferrer(t *testing.T) {
	ctx := context.Background()
	src := initTest(t)
	img := addImage(t, src, "linux/amd64", "a")
	if err := src.Tag(img, "v1"); err != nil {
		t.Fatal(err)
	}
	sbom := attach(t, src, img, "application/spdx+json", fileOf("s", "text/plain", "content"))
	b, _ := src.ReadBlob(sbom, MaxManifestSize)
	m, _ := ParseManifest(b)
	if err := src.Blobs().Delete(m.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	dst := initTest(t)
	_, err := CopyImage(ctx, dst, src, img, CopyOptions{Referrers: &ReferrerSet{}})
	if err == nil || !strings.Contains(err.Error(), sbom.Digest.String()) {
		t.Fatalf("copy with a broken referrer: %v", err)
	}
	if got := blobList(t, dst); len(got) != 0 {
		t.Errorf("dst keeps %v", got)
	}
}
