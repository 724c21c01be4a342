package remote

import (
	"fmt"
	"net"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// TransportPrefix is how skopeo and strata name a registry location on the
// command line: docker://HOST/REPO[:TAG|@DIGEST].
const TransportPrefix = "docker://"

// Reference names an image in a registry. Docker's short names are
// normalised: busybox is docker.io/library/busybox.
type Reference struct {
	// Domain is the registry as written in the name: docker.io,
	// localhost:5000, 127.0.0.1:5000, ghcr.io.
	Domain string
	// Repository is the path inside the registry: library/busybox.
	Repository string
	// Tag is empty when the reference has none.
	Tag string
	// Digest is empty when the reference has none.
	Digest digest.Digest
}

// ParseReference parses HOST/REPO[:TAG][@DIGEST], with or without the
// docker:// prefix. Names without a registry are Docker Hub names. No tag
// is added: callers decide what an untagged reference means.
func ParseReference(s string) (Reference, error) {
	raw := strings.TrimPrefix(s, TransportPrefix)
	if raw == "" {
		return Reference{}, fmt.Errorf("%w %q: empty", ErrInvalidReference, s)
	}
	named, err := reference.ParseNormalizedNamed(raw)
	if err != nil {
		return Reference{}, fmt.Errorf("%w %q: %v", ErrInvalidReference, s, err)
	}
	r := Reference{Domain: reference.Domain(named), Repository: reference.Path(named)}
	if t, ok := named.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		r.Digest = d.Digest()
		if err := r.Digest.Validate(); err != nil {
			return Reference{}, fmt.Errorf("%w %q: %v", ErrInvalidReference, s, err)
		}
	}
	return r, nil
}

// Name is DOMAIN/REPOSITORY.
func (r Reference) Name() string { return r.Domain + "/" + r.Repository }

// String is the full reference: DOMAIN/REPOSITORY[:TAG][@DIGEST].
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// WithDefaultTag returns r with tag "latest" when it has neither a tag nor
// a digest, as docker pull and docker push read such names.
func (r Reference) WithDefaultTag() Reference {
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r
}

// Host is the host:port the registry API is served on. Docker Hub's names
// say docker.io but its API lives at registry-1.docker.io.
func (r Reference) Host() string {
	if r.Domain == "docker.io" || r.Domain == "index.docker.io" {
		return "registry-1.docker.io"
	}
	return r.Domain
}

// object is what the registry API is asked for: the digest when there is
// one (it pins the content), else the tag.
func (r Reference) object() string {
	if r.Digest != "" {
		return r.Digest.String()
	}
	return r.Tag
}

// isLocalHost says whether host (with or without a port) is this machine:
// plain HTTP to it never crosses a network.
func isLocalHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// normalizeRegistry turns what a user types after `login` (a host, a
// host:port, a URL, docker.io or an image name) into the registry's domain.
func normalizeRegistry(s string) (string, error) {
	h := strings.TrimPrefix(s, TransportPrefix)
	h = strings.TrimPrefix(h, "https://")
	h = strings.TrimPrefix(h, "http://")
	h, _, _ = strings.Cut(h, "/")
	if h == "" {
		return "", fmt.Errorf("%w %q: no registry host", ErrInvalidReference, s)
	}
	switch h {
	case "index.docker.io", "registry-1.docker.io":
		h = "docker.io"
	}
	if strings.ContainsAny(h, " \t@") {
		return "", fmt.Errorf("%w %q: not a registry host", ErrInvalidReference, s)
	}
	return h, nil
}
