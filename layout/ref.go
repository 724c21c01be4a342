package layout

import (
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Reference errors.
var (
	// ErrRefNotFound means no image in the layout has the given reference.
	ErrRefNotFound = errors.New("reference not found")
	// ErrInvalidRef means a reference string is malformed.
	ErrInvalidRef = errors.New("invalid reference")
	// ErrAmbiguous means a reference was needed to choose among images.
	ErrAmbiguous = errors.New("ambiguous reference")
)

// SplitRef splits a command-line reference LAYOUT[:REF] at its first colon,
// as skopeo's oci: transport and umoci's --image do. REF is empty when
// there is no colon. The REF part is validated with ValidateRef.
func SplitRef(s string) (dir, ref string, err error) {
	dir, ref, _ = strings.Cut(s, ":")
	if dir == "" {
		return "", "", fmt.Errorf("%w %q: empty layout path", ErrInvalidRef, s)
	}
	if ref != "" {
		if err := ValidateRef(ref); err != nil {
			return "", "", err
		}
	}
	return dir, ref, nil
}

// IsDigestRef reports whether ref names an image by digest (@alg:hex) and
// returns the digest.
func IsDigestRef(ref string) (digest.Digest, bool) {
	if !strings.HasPrefix(ref, "@") {
		return "", false
	}
	return digest.Digest(ref[1:]), true
}

// ValidateRef checks a reference: a tag (v1), a full name
// (docker.io/library/debian:12, localhost:5000/x/y:tag, name@sha256:...)
// or a digest (@sha256:...).
func ValidateRef(ref string) error {
	if d, ok := IsDigestRef(ref); ok {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
		}
		return nil
	}
	if ref == "" {
		return fmt.Errorf("%w: empty reference", ErrInvalidRef)
	}
	if len(ref) > 4096 {
		return fmt.Errorf("%w: reference longer than 4096 bytes", ErrInvalidRef)
	}
	// The image-spec's grammar for ref.name: components of alphanumerics
	// joined by separators, components joined by '/'.
	for _, comp := range strings.Split(ref, "/") {
		if comp == "" {
			return fmt.Errorf("%w %q: empty path component", ErrInvalidRef, ref)
		}
		prevSep := true
		for i := 0; i < len(comp); i++ {
			c := comp[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
				prevSep = false
			case c == '-' || c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '=':
				if prevSep && c != '-' && c != '_' {
					return fmt.Errorf("%w %q: %q cannot follow a separator or start a component", ErrInvalidRef, ref, c)
				}
				prevSep = true
			default:
				return fmt.Errorf("%w %q: character %q is not allowed", ErrInvalidRef, ref, c)
			}
		}
		if prevSep {
			return fmt.Errorf("%w %q: component %q ends with a separator", ErrInvalidRef, ref, comp)
		}
	}
	return nil
}
