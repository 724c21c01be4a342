package layout

import (
	"fmt"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// How a name typed by a user finds its index.json entry, in this order:
//
//  1. exactly as stored: a ref.name (or, for an entry without one, its
//     io.containerd.image.name), then an io.containerd.image.name beside
//     a ref.name. A bare tag such as v1, as skopeo, umoci and oras write
//     ref.name, is only ever matched so.
//  2. as docker reads it: ov1 and ov1:latest are docker.io/library/ov1:latest,
//     matched against stored names read the same way (bare tags left out).
//  3. as a short name: ov1 also matches any stored name whose repository
//     ends in /ov1 with the same tag (localhost/ov1:latest,
//     ghcr.io/x/ov1:latest), when the typed name has no registry.
//
// The first step that matches decides; when it matches several images the
// reference is ambiguous (AmbiguousRefError), since picking one could
// silently act on the wrong image.

// NormalizeName returns an image name fully qualified, as docker reads it:
// ov1 is docker.io/library/ov1:latest, example.com/x is
// example.com/x:latest, a digest stays. It returns "" for strings that are
// not image names (digest references, upper-case repositories).
func NormalizeName(name string) string {
	if name == "" || strings.HasPrefix(name, "@") {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return ""
	}
	return reference.TagNameOnly(named).String()
}

// IsBareTag reports whether a stored name is a tag alone (v1, latest), as
// skopeo's oci:DIR:v1, umoci and oras write ref.name: no repository, no
// registry, no digest. Such a name is a tag of the layout, not docker's
// v1:latest, and is matched only exactly.
func IsBareTag(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/:@")
}

// AmbiguousRefError means a reference matched several images. It wraps
// ErrAmbiguous.
type AmbiguousRefError struct {
	Layout string
	Ref    string
	// Candidates are the stored names it matched, sorted, with the digest
	// of the image each names.
	Candidates []Candidate
}

// Candidate is one image an ambiguous reference could mean.
type Candidate struct {
	Name   string
	Digest digest.Digest
}

func (e *AmbiguousRefError) Error() string {
	parts := make([]string, len(e.Candidates))
	for i, c := range e.Candidates {
		parts[i] = c.Name + " (" + shortDigest(c.Digest) + ")"
	}
	return fmt.Sprintf("%s:%s: %v: it matches %s; use the full name", e.Layout, e.Ref, ErrAmbiguous, strings.Join(parts, ", "))
}

// Unwrap makes errors.Is(err, ErrAmbiguous) true.
func (e *AmbiguousRefError) Unwrap() error { return ErrAmbiguous }

func shortDigest(d digest.Digest) string {
	s := d.String()
	if i := strings.IndexByte(s, ':'); i >= 0 && len(s) > i+13 {
		return s[:i+13]
	}
	return s
}

// nameHit is an index.json entry a name matched, and the stored name it
// matched by.
type nameHit struct {
	desc ocispec.Descriptor
	name string
}

// primaryName is the name an entry is listed and removed by: its ref.name,
// or its io.containerd.image.name when it has no ref.name.
func primaryName(m ocispec.Descriptor) string {
	if n := m.Annotations[AnnotationRefName]; n != "" {
		return n
	}
	return m.Annotations[AnnotationImageName]
}

// secondaryName is an io.containerd.image.name recorded beside a ref.name
// (the registry name of an image pulled under a local name).
func secondaryName(m ocispec.Descriptor) string {
	if m.Annotations[AnnotationRefName] == "" {
		return ""
	}
	return m.Annotations[AnnotationImageName]
}

// The steps of a name lookup.
type matchStep int

const (
	matchNone matchStep = iota
	matchExact
	matchNormalized
	matchShort
)

// nameScope says which names of an entry a lookup matches.
type nameScope int

const (
	// refNameOnly matches an entry's primary name alone: removing a
	// name goes by it.
	refNameOnly nameScope = iota
	// anyName also matches a name recorded beside a ref.name: finding
	// an image goes by either.
	anyName
)

// lookupName finds the entries ref names, following the order at the top
// of this file, among the names scope says. It returns the hits of the
// first step that has any, and that step.
func lookupName(idx *Index, ref string, scope nameScope) ([]nameHit, matchStep) {
	var hits []nameHit
	keys := []func(ocispec.Descriptor) string{primaryName}
	if scope == anyName {
		keys = append(keys, secondaryName)
	}
	for _, key := range keys {
		for _, m := range idx.Manifests {
			if key(m) == ref {
				hits = append(hits, nameHit{m, ref})
			}
		}
		if hits != nil {
			return hits, matchExact
		}
	}
	norm := NormalizeName(ref)
	if norm == "" {
		return nil, matchNone
	}
	for _, key := range keys {
		for _, m := range idx.Manifests {
			if n := key(m); n != "" && !IsBareTag(n) && NormalizeName(n) == norm {
				hits = append(hits, nameHit{m, n})
			}
		}
		if hits != nil {
			return hits, matchNormalized
		}
	}
	if hasDomain(ref) {
		return nil, matchNone
	}
	_, tail := splitName(norm)
	suffix := "/" + typedRepo(ref)
	for _, key := range keys {
		for _, m := range idx.Manifests {
			n := key(m)
			if n == "" || IsBareTag(n) {
				continue
			}
			r, t := splitName(NormalizeName(n))
			if r != "" && t == tail && strings.HasSuffix(r, suffix) {
				hits = append(hits, nameHit{m, n})
			}
		}
	}
	if hits == nil {
		return nil, matchNone
	}
	return hits, matchShort
}

// splitName splits a normalized name into its repository
// (docker.io/library/ov1) and the rest (:latest, @sha256:..., or both).
func splitName(norm string) (repo, tail string) {
	named, err := reference.ParseNormalizedNamed(norm)
	if err != nil {
		return "", ""
	}
	return named.Name(), norm[len(named.Name()):]
}

// typedRepo is the repository part of a name as typed: ov1 of ov1:2,
// org/app of org/app@sha256:...
func typedRepo(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		ref = ref[:i]
	}
	return ref
}

// hasDomain reports whether a typed name starts with a registry, as docker
// decides it: a first component with a dot or a port, or localhost.
func hasDomain(ref string) bool {
	first, _, ok := strings.Cut(ref, "/")
	return ok && (strings.ContainsAny(first, ".:") || first == "localhost")
}

// distinctBy says what makes two hits of a lookup different.
type distinctBy int

const (
	distinctImages distinctBy = iota // hits of one image are one
	distinctNames                    // hits of one name are one
)

// ambiguity returns an AmbiguousRefError when hits hold more than one
// distinct value of by, else nil.
func (l *Layout) ambiguity(ref string, hits []nameHit, by distinctBy) error {
	seen := map[string]bool{}
	var cands []Candidate
	distinct := map[string]bool{}
	for _, h := range hits {
		k := h.name + "@" + h.desc.Digest.String()
		if !seen[k] {
			seen[k] = true
			cands = append(cands, Candidate{Name: h.name, Digest: h.desc.Digest})
		}
		if by == distinctNames {
			distinct[h.name] = true
		} else {
			distinct[h.desc.Digest.String()] = true
		}
	}
	if len(distinct) < 2 {
		return nil
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].Name != cands[j].Name {
			return cands[i].Name < cands[j].Name
		}
		return cands[i].Digest < cands[j].Digest
	})
	return &AmbiguousRefError{Layout: l.dir, Ref: ref, Candidates: cands}
}
