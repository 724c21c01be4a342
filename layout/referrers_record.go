package layout

// Carrying referrers: collecting those a copy moved (ReferrerSet),
// copying their blobs, and recording them with their image in one
// index.json update (Record, Index.AddReferrers). How they are found is
// in referrers.go.

import (
	"context"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

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
