package layout

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Tag names the image desc points at with each of names, in one atomic
// update of index.json. A name that named another image moves; an untagged
// entry for the same digest is replaced by the named one.
func (l *Layout) Tag(desc ocispec.Descriptor, names ...string) error {
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
		return fmt.Errorf("tag %s: manifest %s is not in the layout", l.dir, desc.Digest)
	}
	desc = stripName(desc)
	return l.UpdateIndex(func(idx *Index) error {
		for _, n := range names {
			idx.setName(desc, n)
		}
		return nil
	})
}

// AddUntagged records desc in index.json without a name, unless an entry
// for the same digest is there already. Untagged images are listed by
// digest and kept by gc.
func (l *Layout) AddUntagged(desc ocispec.Descriptor) error {
	if err := l.Hold(); err != nil {
		return err
	}
	if !l.blobs.Has(desc.Digest, desc.Size) {
		return fmt.Errorf("add %s: manifest %s is not in the layout", l.dir, desc.Digest)
	}
	desc = stripName(desc)
	return l.UpdateIndex(func(idx *Index) error {
		for _, m := range idx.Manifests {
			if m.Digest == desc.Digest {
				return nil
			}
		}
		idx.Manifests = append(idx.Manifests, desc)
		return nil
	})
}

// Untag removes names from index.json in one atomic update. A name is
// found as Resolve finds it, by ref.name (ov1 removes
// docker.io/library/ov1:latest; a short name matching several names is an
// *AmbiguousRefError). A digest reference (@sha256:...) removes every
// entry for that image. If any ref
// names nothing, nothing is removed. An image whose last entry goes is left
// for gc to collect.
func (l *Layout) Untag(refs ...string) error {
	for _, ref := range refs {
		if err := checkLookupRef(ref); err != nil {
			return err
		}
	}
	return l.UpdateIndex(func(idx *Index) error {
		for _, ref := range refs {
			d, byDigest := IsDigestRef(ref)
			gone := map[string]bool{}
			if !byDigest {
				names, err := l.namesOf(idx, ref)
				if err != nil {
					return err
				}
				for _, n := range names {
					gone[n] = true
				}
			}
			kept := idx.Manifests[:0]
			removed := 0
			for _, m := range idx.Manifests {
				if (byDigest && m.Digest == d) || (!byDigest && gone[primaryName(m)]) {
					removed++
					continue
				}
				kept = append(kept, m)
			}
			idx.Manifests = kept
			if removed == 0 {
				return fmt.Errorf("%s:%s: %w", l.dir, ref, ErrRefNotFound)
			}
		}
		return nil
	})
}

// Names returns the names of index.json that the name ref stands for, as
// Untag finds them: the ref.names (or io.containerd.image.names of
// entries without one) that match it exactly, else as docker reads it
// (every spelling of that name), else as a short name, which must match
// one name. It fails with ErrRefNotFound when there is none.
func (l *Layout) Names(ref string) ([]string, error) {
	if err := checkLookupRef(ref); err != nil {
		return nil, err
	}
	if _, ok := IsDigestRef(ref); ok {
		return nil, fmt.Errorf("%w %q: a digest is not a name", ErrInvalidRef, ref)
	}
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	return l.namesOf(idx, ref)
}

func (l *Layout) namesOf(idx *Index, ref string) ([]string, error) {
	hits, step := lookupName(idx, ref, refNameOnly)
	if step == matchNone {
		return nil, fmt.Errorf("%s:%s: %w", l.dir, ref, ErrRefNotFound)
	}
	if step == matchShort {
		if err := l.ambiguity(ref, hits, distinctNames); err != nil {
			return nil, err
		}
	}
	var out []string
	for _, h := range hits {
		if !slices.Contains(out, h.name) {
			out = append(out, h.name)
		}
	}
	return out, nil
}

// Entry is one image in a layout listing.
type Entry struct {
	// Name is the ref.name, empty for an untagged image.
	Name       string             `json:"name,omitempty"`
	Descriptor ocispec.Descriptor `json:"descriptor"`
	Platforms  []string           `json:"platforms,omitempty"`
	// Size is the total size of the distinct blobs the image references:
	// manifests, configs and compressed layers.
	Size int64 `json:"size"`
	// Err is why the entry could not be read, if it could not.
	Err string `json:"error,omitempty"`
	// Subject is set for a referrer (an untagged manifest with a subject,
	// or one of cosign's tags): the digest of the image it refers to.
	Subject digest.Digest `json:"subject,omitempty"`
}

// List describes every entry of index.json, sorted by name, untagged
// images last.
func (l *Layout) List() ([]Entry, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(idx.Manifests))
	for _, m := range idx.Manifests {
		e := Entry{Name: m.Annotations[AnnotationRefName], Descriptor: m, Subject: l.subjectOf(m)}
		if e.Subject != "" {
			// A signature or an SBOM runs on no platform.
		} else if ps, err := l.Platforms(m); err != nil {
			e.Err = err.Error()
		} else {
			for _, p := range ps {
				e.Platforms = append(e.Platforms, formatPlatform(p))
			}
		}
		if size, err := l.totalSize(m); err != nil && e.Err == "" {
			e.Err = err.Error()
		} else {
			e.Size = size
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Name == "") != (out[j].Name == "") {
			return out[i].Name != ""
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// totalSize adds up the sizes of the distinct blobs reachable from desc.
func (l *Layout) totalSize(desc ocispec.Descriptor) (int64, error) {
	seen := map[digest.Digest]bool{}
	var total int64
	err := l.Walk(desc, func(d ocispec.Descriptor, _ []byte) error {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			total += d.Size
		}
		return nil
	})
	return total, err
}

// PutJSON marshals v, stores it as a blob and returns its descriptor.
func (l *Layout) PutJSON(mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode %s: %w", mediaType, err)
	}
	return l.PutBytes(mediaType, b)
}

// PutBytes stores b as a blob and returns its descriptor.
func (l *Layout) PutBytes(mediaType string, b []byte) (ocispec.Descriptor, error) {
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	d, err := l.blobs.PutBytes(b)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}
