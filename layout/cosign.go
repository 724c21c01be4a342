package layout

import (
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// cosign's artifacts name their subject by a tag, and names are split
// into repository and tag here (see referrers.go).

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
