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
// there is no colon. REF is checked with checkLookupRef, so that names
// other tools wrote stay reachable; names strata writes are checked with
// ValidateRef where they are written.
func SplitRef(s string) (dir, ref string, err error) {
	dir, ref, _ = strings.Cut(s, ":")
	if dir == "" {
		return "", "", fmt.Errorf("%w %q: empty layout path", ErrInvalidRef, s)
	}
	if ref != "" {
		if err := checkLookupRef(ref); err != nil {
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

// checkLookupRef checks a reference used to find an image: a digest
// reference (@sha256:...) must be a valid digest, and any other reference
// must be made of letters, digits and - . _ : @ + = in non-empty
// components joined by /. It is looser than ValidateRef because index.json
// may hold names other tools wrote (Docker allows foo__bar and _tag, which
// the image-spec grammar does not).
func checkLookupRef(ref string) error {
	if d, ok := IsDigestRef(ref); ok {
		if err := d.Validate(); err != nil {
			return fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
		}
		return nil
	}
	if ref == "" {
		return fmt.Errorf("%w: empty reference", ErrInvalidRef)
	}
	if len(ref) > maxRefLen {
		return fmt.Errorf("%w: reference longer than %d bytes", ErrInvalidRef, maxRefLen)
	}
	for _, comp := range strings.Split(ref, "/") {
		if comp == "" {
			return fmt.Errorf("%w %q: empty path component", ErrInvalidRef, ref)
		}
		for i := 0; i < len(comp); i++ {
			if c := comp[i]; !isAlnum(c) && strings.IndexByte("-._:@+=", c) < 0 {
				return fmt.Errorf("%w %q: character %q is not allowed", ErrInvalidRef, ref, c)
			}
		}
	}
	return nil
}

const maxRefLen = 4096

// ValidateRef checks a name strata is about to write, or a digest
// reference: a tag (v1), a full name (docker.io/library/debian:12,
// localhost:5000/x/y:tag, name@sha256:...) or a digest (@sha256:...).
// Names follow the image-spec grammar for org.opencontainers.image.ref.name,
// which skopeo and umoci enforce, so that every name strata writes can be
// used with them: components of letters and digits joined by one of
// - . _ : @ + or by --, components joined by /.
func ValidateRef(ref string) error {
	if err := checkLookupRef(ref); err != nil {
		return err
	}
	if _, ok := IsDigestRef(ref); ok {
		return nil
	}
	for _, comp := range strings.Split(ref, "/") {
		if err := validComponent(comp); err != nil {
			return fmt.Errorf("%w %q: %v", ErrInvalidRef, ref, err)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// validComponent checks one /-separated component: runs of letters and
// digits, each pair joined by exactly one separator.
func validComponent(c string) error {
	if c == "" {
		return errors.New("empty path component")
	}
	i := 0
	for {
		start := i
		for i < len(c) && isAlnum(c[i]) {
			i++
		}
		if i == start {
			if start == 0 {
				return fmt.Errorf("component %q must start with a letter or digit", c)
			}
			return fmt.Errorf("component %q: separators must be followed by a letter or digit", c)
		}
		if i == len(c) {
			return nil
		}
		switch {
		case c[i] == '-' && i+1 < len(c) && c[i+1] == '-':
			i += 2
		case strings.IndexByte("-._:@+", c[i]) >= 0:
			i++
		default:
			return fmt.Errorf("character %q is not allowed", c[i])
		}
		if i == len(c) {
			return fmt.Errorf("component %q ends with a separator", c)
		}
	}
}
