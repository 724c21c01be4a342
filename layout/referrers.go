package layout

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

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

// ReferrerSet collects the referrers a copy transferred (CopyOptions),
// each once, for the caller to record in the destination's index.json
// with the image (Layout.Record, Index.AddReferrers). It also keeps the
// referrer index of each source layout it has scanned, so that a copy of
// many images scans each source once. Safe for concurrent use.
type ReferrerSet struct {
	mu    sync.Mutex
	list  []Referrer
	seen  map[string]bool
	index map[*Layout]*ReferrerIndex
}

// add records r and says whether it is new.
func (s *ReferrerSet) add(r Referrer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := r.Descriptor.Digest.String() + " " + r.Tag
	if s.seen[key] {
		return false
	}
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[key] = true
	s.list = append(s.list, r)
	return true
}

// Take returns the referrers recorded since the last Take and forgets
// them; what was seen stays seen, so a referrer shared by several images
// is copied and returned once.
func (s *ReferrerSet) Take() []Referrer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.list
	s.list = nil
	return out
}

// indexOf returns the referrer index of src, scanning it the first time.
func (s *ReferrerSet) indexOf(ctx context.Context, src *Layout) (*ReferrerIndex, error) {
	s.mu.Lock()
	ri := s.index[src]
	s.mu.Unlock()
	if ri != nil {
		return ri, nil
	}
	ri, err := src.ReferrerIndex(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.index == nil {
		s.index = map[*Layout]*ReferrerIndex{}
	}
	s.index[src] = ri
	s.mu.Unlock()
	return ri, nil
}

// UseIndex makes copies from src find referrers in ri rather than in
// src's index.json: for a source whose index.json does not list its
// images (a staging layout).
func (s *ReferrerSet) UseIndex(src *Layout, ri *ReferrerIndex) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.index == nil {
		s.index = map[*Layout]*ReferrerIndex{}
	}
	s.index[src] = ri
}

// CopyReferrers copies every blob of each referrer in refs from src into
// dst, each whole (all platforms), verified, leaves first. refs come from
// a ReferrerIndex of src or a ReferrerSet.
func CopyReferrers(ctx context.Context, dst, src *Layout, refs []Referrer, opts CopyOptions) error {
	for _, r := range refs {
		if err := copyGraph(ctx, dst, src, r.Descriptor, opts); err != nil {
			return fmt.Errorf("copy referrer %s of %s: %w", r.Descriptor.Digest, r.Subject, err)
		}
	}
	return nil
}

// AddReferrers records refs, referrers of the image named names, in the
// index: a referrer with a subject field as an untagged entry (unless an
// entry for it is there), one of cosign's under its tag in the
// repository of each of names (localhost/app:sha256-<hex>.sig; the bare
// tag where names have no repository), moving that name if it named
// something else.
func (idx *Index) AddReferrers(names []string, refs []Referrer) {
	for _, r := range refs {
		d := stripName(r.Descriptor)
		if r.Tag == "" {
			if !idx.hasDigest(d.Digest) {
				idx.Manifests = append(idx.Manifests, d)
			}
			continue
		}
		for _, n := range CosignNames(names, r.Tag) {
			idx.setName(bareDescriptor(d), n)
		}
	}
}

// CosignNames are the names a cosign artifact with tag gets beside an
// image named names: its tag in each of their repositories, or the bare
// tag when none has one.
func CosignNames(names []string, tag string) []string {
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		name := tag
		if repo := repositoryOf(n); repo != "" {
			name = repo + ":" + tag
		}
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		out = append(out, tag)
	}
	return out
}

func (idx *Index) hasDigest(d digest.Digest) bool {
	for _, m := range idx.Manifests {
		if m.Digest == d {
			return true
		}
	}
	return false
}

// setName names desc n: an entry that had the name n, or an untagged
// entry of the same digest, is replaced.
func (idx *Index) setName(desc ocispec.Descriptor, n string) {
	kept := idx.Manifests[:0]
	for _, m := range idx.Manifests {
		name := m.Annotations[AnnotationRefName]
		if name == n || (name == "" && m.Digest == desc.Digest) {
			continue
		}
		kept = append(kept, m)
	}
	idx.Manifests = kept
	d := desc
	d.Annotations = map[string]string{AnnotationRefName: n}
	for k, v := range desc.Annotations {
		d.Annotations[k] = v
	}
	idx.Manifests = append(idx.Manifests, d)
}

// Record names the image desc points at with names (untagged when there
// are none) and records refs, its referrers, beside it (see
// Index.AddReferrers), in one atomic update of index.json, so that an
// image and its referrers appear together. Every blob of desc and refs
// must be in the layout already.
func (l *Layout) Record(desc ocispec.Descriptor, names []string, refs []Referrer) error {
	for _, n := range names {
		if err := ValidateRef(n); err != nil {
			return err
		}
		if _, ok := IsDigestRef(n); ok {
			return fmt.Errorf("%w %q: cannot tag with a digest", ErrInvalidRef, n)
		}
	}
	if err := l.Hold(); err != nil {
		return err
	}
	if !l.blobs.Has(desc.Digest, desc.Size) {
		return fmt.Errorf("record in %s: manifest %s is not in the layout", l.dir, desc.Digest)
	}
	for _, r := range refs {
		if !l.blobs.Has(r.Descriptor.Digest, r.Descriptor.Size) {
			return fmt.Errorf("record in %s: referrer %s of %s is not in the layout", l.dir, r.Descriptor.Digest, r.Subject)
		}
	}
	desc = stripName(desc)
	return l.UpdateIndex(func(idx *Index) error {
		if len(names) == 0 && !idx.hasDigest(desc.Digest) {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, n := range names {
			idx.setName(desc, n)
		}
		idx.AddReferrers(names, refs)
		return nil
	})
}
