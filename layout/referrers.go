package layout

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// How referrers live in a layout.
//
// A referrer is a manifest or an index whose subject field names another
// manifest or index: a signature, an SBOM, an attestation (image-spec
// 1.1). strata stores each as an untagged index.json entry whose
// descriptor is the one the distribution-spec referrers API lists
// (media type, digest, size, artifactType, the manifest's annotations),
// as oras-go's content/oci store keeps them, so that oras reads strata's
// layouts and strata reads oras's. Other forms are read too: referrers
// listed by an index under the fallback tag sha256-<hex> (regclient's
// ocidir), and referrers reached from any entry. The referrers of a
// manifest are found by reading the subject of every manifest and index
// index.json reaches; nothing else records them.
//
// cosign (before its OCI 1.1 mode) ties a signature, attestation or SBOM
// to its subject by a tag instead: sha256-<hex>.sig, .att or .sbom in the
// subject's repository. strata keeps those as named entries
// (REPOSITORY:sha256-<hex>.sig, or the bare tag when the subject has no
// repository name) and treats them as referrers of that digest, so that
// they travel with it.
//
// An untagged referrer lives as long as its subject: gc keeps it while its
// subject is kept and removes it, entry and blobs, once its subject is
// gone. A named one is kept like any named image.

// MediaTypeEmptyJSON is the empty config of artifacts: the two bytes {}.
const MediaTypeEmptyJSON = ocispec.MediaTypeEmptyJSON

// Referrer is a manifest or index that refers to another, its subject.
type Referrer struct {
	// Descriptor is the referrer as the referrers API lists it: media
	// type, digest, size, artifactType and the manifest's annotations.
	Descriptor ocispec.Descriptor `json:"descriptor"`
	// Subject is the digest of the manifest or index it refers to.
	Subject digest.Digest `json:"subject"`
	// Tag is set for cosign's artifacts, which name their subject by a
	// tag (sha256-<hex>.sig, .att, .sbom) rather than a subject field.
	Tag string `json:"tag,omitempty"`
}

// CosignSuffixes are the tag suffixes of cosign's signatures,
// attestations and SBOMs.
var CosignSuffixes = []string{".sig", ".att", ".sbom"}

// CosignTag is the tag cosign stores an artifact of subject under:
// sha256-<hex> and suffix (".sig", ".att" or ".sbom").
func CosignTag(subject digest.Digest, suffix string) string {
	return subject.Algorithm().String() + "-" + subject.Encoded() + suffix
}

var cosignTagRE = regexp.MustCompile(`^(sha256|sha384|sha512)-([0-9a-f]{64,128})\.(sig|att|sbom)$`)

// ParseCosignTag reports whether tag is one of cosign's artifact tags and
// returns the digest of its subject.
func ParseCosignTag(tag string) (digest.Digest, bool) {
	m := cosignTagRE.FindStringSubmatch(tag)
	if m == nil {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(m[1]), m[2])
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}

// tagOf is the tag part of a stored name: v1 of localhost/app:v1, and a
// bare tag itself. A name without a tag gives "".
func tagOf(name string) string {
	if IsBareTag(name) {
		return name
	}
	if strings.Contains(name, "@") {
		return ""
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	return ""
}

// repositoryOf is the repository part of a stored name (localhost/app of
// localhost/app:v1); "" for a bare tag.
func repositoryOf(name string) string {
	if IsBareTag(name) {
		return ""
	}
	if i := strings.IndexByte(name, '@'); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return name
}

// isReferrerEntry reports whether an index.json entry is a referrer: one
// of cosign's tags, or an untagged manifest or index with a subject.
func (l *Layout) isReferrerEntry(e ocispec.Descriptor) bool { return l.subjectOf(e) != "" }

// IsReferrer reports whether the manifest or index d points at has a
// subject: whether it is a referrer.
func (l *Layout) IsReferrer(d ocispec.Descriptor) bool { return l.subjectOf(stripName(d)) != "" }

// subjectOf is the subject of an index.json entry that is a referrer (see
// isReferrerEntry), else "".
func (l *Layout) subjectOf(e ocispec.Descriptor) digest.Digest {
	if name := primaryName(e); name != "" {
		d, _ := ParseCosignTag(tagOf(name))
		return d
	}
	if e.Size < 0 || e.Size > MaxManifestSize || (e.MediaType != "" && !IsManifest(e.MediaType) && !IsIndex(e.MediaType)) {
		return ""
	}
	b, err := l.ReadBlob(e, MaxManifestSize)
	if err != nil {
		return ""
	}
	var h manifestHead
	if json.Unmarshal(b, &h) != nil || h.Subject == nil || h.Subject.Digest.Validate() != nil {
		return ""
	}
	return h.Subject.Digest
}

// manifestHead is what a referrer scan reads of a manifest or index.
type manifestHead struct {
	MediaType    string `json:"mediaType"`
	ArtifactType string `json:"artifactType"`
	Config       *struct {
		MediaType string `json:"mediaType"`
	} `json:"config"`
	Subject     *ocispec.Descriptor  `json:"subject"`
	Annotations map[string]string    `json:"annotations"`
	Manifests   []ocispec.Descriptor `json:"manifests"`
}

// ReferrerDescriptor parses the manifest or index b and returns the
// descriptor the referrers API lists for it (artifactType: its own, or
// for a manifest without one its config's media type), and its subject,
// nil when it has none. d gives the digest and size of b.
func ReferrerDescriptor(d ocispec.Descriptor, b []byte) (ocispec.Descriptor, *ocispec.Descriptor, error) {
	var h manifestHead
	if err := json.Unmarshal(b, &h); err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("parse %s: %w", d.Digest, err)
	}
	return h.referrerDescriptor(d), h.Subject, nil
}

func (h *manifestHead) referrerDescriptor(d ocispec.Descriptor) ocispec.Descriptor {
	out := ocispec.Descriptor{MediaType: h.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: h.ArtifactType}
	if out.MediaType == "" {
		out.MediaType = d.MediaType
	}
	if out.ArtifactType == "" && h.Config != nil && IsManifest(out.MediaType) {
		out.ArtifactType = h.Config.MediaType
	}
	if len(h.Annotations) > 0 {
		out.Annotations = h.Annotations
	}
	return out
}

// ReferrerIndex says, for each manifest or index of a layout, which
// referrers it has. It holds one small descriptor per referrer, whatever
// the size of the layout, and is built on demand by scanning (see
// Layout.ReferrerIndex); it does not follow later changes.
type ReferrerIndex struct {
	l  *Layout
	by map[digest.Digest][]Referrer
	// untagged are the untagged index.json entries that are referrers.
	untagged map[digest.Digest]Referrer
	n        int
}

// ReferrerIndex scans the manifests and indexes index.json reaches for
// their subjects, and index.json's names for cosign's tags. Blobs that
// cannot be read are passed over (fsck names them).
func (l *Layout) ReferrerIndex(ctx context.Context) (*ReferrerIndex, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	return l.ReferrerIndexOf(ctx, idx.Manifests)
}

// ReferrerIndexOf is ReferrerIndex over entries instead of index.json's:
// for a layout whose index.json does not list what is being read yet
// (an archive's images staged in a private layout).
func (l *Layout) ReferrerIndexOf(ctx context.Context, entries []ocispec.Descriptor) (*ReferrerIndex, error) {
	ri := &ReferrerIndex{l: l, by: map[digest.Digest][]Referrer{}, untagged: map[digest.Digest]Referrer{}}
	seen := map[digest.Digest]bool{}
	found := map[digest.Digest]Referrer{}
	var visit func(d ocispec.Descriptor, depth int) error
	visit = func(d ocispec.Descriptor, depth int) error {
		if depth > 16 || seen[d.Digest] || d.Size < 0 || d.Size > MaxManifestSize || d.Digest.Validate() != nil {
			return nil
		}
		if d.MediaType != "" && !IsIndex(d.MediaType) && !IsManifest(d.MediaType) {
			return nil
		}
		seen[d.Digest] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := l.ReadBlob(d, MaxManifestSize)
		if err != nil {
			return nil
		}
		var h manifestHead
		if json.Unmarshal(b, &h) != nil {
			return nil
		}
		if h.MediaType == "" {
			h.MediaType = d.MediaType
		}
		if h.MediaType == "" {
			h.MediaType = sniffMediaType(b)
		}
		if h.Subject != nil && h.Subject.Digest.Validate() == nil {
			r := Referrer{Descriptor: h.referrerDescriptor(d), Subject: h.Subject.Digest}
			ri.add(r)
			found[d.Digest] = r
		}
		if IsIndex(h.MediaType) {
			for _, c := range h.Manifests {
				if err := visit(c, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, e := range entries {
		if err := visit(stripName(e), 0); err != nil {
			return nil, err
		}
		name := primaryName(e)
		if r, ok := found[e.Digest]; ok && name == "" {
			ri.untagged[e.Digest] = r
		}
		if name == "" {
			continue
		}
		if subj, ok := ParseCosignTag(tagOf(name)); ok {
			ri.add(Referrer{Descriptor: bareDescriptor(e), Subject: subj, Tag: tagOf(name)})
		}
	}
	return ri, nil
}

// bareDescriptor drops what an index.json entry says beyond the blob.
func bareDescriptor(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
}

func (ri *ReferrerIndex) add(r Referrer) {
	for _, o := range ri.by[r.Subject] {
		if o.Descriptor.Digest == r.Descriptor.Digest && o.Tag == r.Tag {
			return
		}
	}
	ri.by[r.Subject] = append(ri.by[r.Subject], r)
	ri.n++
}

// Len is the number of referrers found.
func (ri *ReferrerIndex) Len() int { return ri.n }

// Of lists the direct referrers of subject, in the order found; with
// artifactType set, only those of that type.
func (ri *ReferrerIndex) Of(subject digest.Digest, artifactType string) []Referrer {
	var out []Referrer
	for _, r := range ri.by[subject] {
		if artifactType == "" || r.Descriptor.ArtifactType == artifactType {
			out = append(out, r)
		}
	}
	return out
}

// Subjects lists every digest that has referrers.
func (ri *ReferrerIndex) Subjects() []digest.Digest {
	out := make([]digest.Digest, 0, len(ri.by))
	for d := range ri.by {
		out = append(out, d)
	}
	return out
}

// IsUntaggedReferrer reports whether the index.json entry for d (as
// scanned) is an untagged referrer, and returns it.
func (ri *ReferrerIndex) IsUntaggedReferrer(d digest.Digest) (Referrer, bool) {
	r, ok := ri.untagged[d]
	return r, ok
}

// Closure lists the referrers of root and of every manifest and index it
// reaches, and theirs in turn, each once, a referrer before the referrers
// of its own graph.
func (ri *ReferrerIndex) Closure(ctx context.Context, root ocispec.Descriptor) ([]Referrer, error) {
	var out []Referrer
	seen := map[string]bool{}
	queue, err := ri.l.manifestsOf(root)
	if err != nil {
		return nil, err
	}
	done := map[digest.Digest]bool{}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s := queue[0]
		queue = queue[1:]
		if done[s] {
			continue
		}
		done[s] = true
		for _, r := range ri.by[s] {
			key := r.Descriptor.Digest.String() + " " + r.Tag
			if seen[key] {
				continue
			}
			seen[key] = true
			out = append(out, r)
			sub, err := ri.l.manifestsOf(r.Descriptor)
			if err != nil {
				return nil, fmt.Errorf("referrer %s of %s: %w", r.Descriptor.Digest, r.Subject, err)
			}
			queue = append(queue, sub...)
		}
	}
	return out, nil
}

// Carried returns the digests of the referrers the closures of roots
// hold: the index.json entries that travel as referrers of another image
// when referrers are followed, rather than as images of their own.
func (ri *ReferrerIndex) Carried(ctx context.Context, roots []ocispec.Descriptor) (map[digest.Digest]bool, error) {
	out := map[digest.Digest]bool{}
	for _, root := range roots {
		refs, err := ri.Closure(ctx, root)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			out[r.Descriptor.Digest] = true
		}
	}
	return out, nil
}

// IsReferrerName reports whether a stored name is one of cosign's
// artifact tags (REPOSITORY:sha256-<hex>.sig, .att, .sbom).
func IsReferrerName(name string) bool {
	_, ok := ParseCosignTag(tagOf(name))
	return ok
}

// manifestsOf lists the digests of root and of the manifests and indexes
// it lists when it is an index, nested ones too, root first: what can
// have referrers in root's graph. Only indexes are read, so an index
// whose platform manifests are not all in the layout is no error.
func (l *Layout) manifestsOf(root ocispec.Descriptor) ([]digest.Digest, error) {
	var out []digest.Digest
	seen := map[digest.Digest]bool{}
	var visit func(d ocispec.Descriptor, depth int) error
	visit = func(d ocispec.Descriptor, depth int) error {
		if seen[d.Digest] {
			return nil
		}
		if depth > 16 {
			return fmt.Errorf("%s: indexes nested too deeply", d.Digest)
		}
		seen[d.Digest] = true
		out = append(out, d.Digest)
		if d = l.typed(d); !IsIndex(d.MediaType) {
			return nil
		}
		idx, err := l.ReadIndex(d)
		if err != nil {
			return err
		}
		for _, c := range idx.Manifests {
			if c.MediaType == "" || IsIndex(c.MediaType) || IsManifest(c.MediaType) {
				if err := visit(c, depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := visit(root, 0)
	return out, err
}

// Direct lists the direct referrers of root and of the manifests and
// indexes it lists (an index's platform manifests have their own), in
// that order; with artifactType set, only those of that type.
func (ri *ReferrerIndex) Direct(root ocispec.Descriptor, artifactType string) ([]Referrer, error) {
	subjects, err := ri.l.manifestsOf(root)
	if err != nil {
		return nil, err
	}
	var out []Referrer
	for _, s := range subjects {
		out = append(out, ri.Of(s, artifactType)...)
	}
	return out, nil
}

// Referrers lists the direct referrers of subject in the layout (see
// ReferrerIndex); with artifactType set, only those of that type.
func (l *Layout) Referrers(ctx context.Context, subject digest.Digest, artifactType string) ([]Referrer, error) {
	ri, err := l.ReferrerIndex(ctx)
	if err != nil {
		return nil, err
	}
	return ri.Of(subject, artifactType), nil
}
