package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/remote"
	"go.yaml.in/yaml/v3"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// ErrInvalidList means a sync list does not parse or says something
// strata cannot do.
var ErrInvalidList = errors.New("invalid sync list")

// maxListSize bounds a sync list read whole.
const maxListSize = 4 << 20

// registryEntry is one registry of a sync list, with the keys skopeo
// sync --src yaml reads, and platforms (strata's).
type registryEntry struct {
	Images           map[string][]string `yaml:"images"`
	ImagesByTagRegex map[string]string   `yaml:"images-by-tag-regex"`
	ImagesBySemver   map[string]string   `yaml:"images-by-semver"`
	Credentials      *struct {
		Username string `yaml:"username"`
		Password string `yaml:"password"`
	} `yaml:"credentials"`
	TLSVerify *bool    `yaml:"tls-verify"`
	CertDir   string   `yaml:"cert-dir"`
	Platforms []string `yaml:"platforms"`
}

// ReadList reads a sync list in the YAML of skopeo sync --src yaml:
//
//	registry.example.com:
//	  images:
//	    busybox: []                # every tag
//	    redis: ["1.0", "2.0", "sha256:..."]
//	  images-by-tag-regex:
//	    nginx: ^1\.13\.[12]-alpine-perl$
//	  images-by-semver:
//	    alpine: ">= 3.12.0, < 4"
//	  credentials: {username: john, password: secret}
//	  tls-verify: false            # no TLS verification, plain HTTP allowed
//	  cert-dir: /etc/certs
//	  platforms: [linux/amd64]     # strata's: cut indexes to these
//
// Unknown keys are refused, naming them. The sources come out sorted by
// registry and repository.
func ReadList(r io.Reader) ([]Source, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxListSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxListSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrInvalidList, maxListSize)
	}
	var regs map[string]registryEntry
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&regs); err != nil && !errors.Is(err, io.EOF) {
		// One line: yaml lists each problem on a line of its own.
		msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
		return nil, fmt.Errorf("%w: %s", ErrInvalidList, msg)
	}
	hosts := make([]string, 0, len(regs))
	for h := range regs {
		hosts = append(hosts, h)
	}
	sort.Strings(hosts)
	var out []Source
	for _, host := range hosts {
		srcs, err := regs[host].sources(host)
		if err != nil {
			return nil, err
		}
		out = append(out, srcs...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: it names no image", ErrInvalidList)
	}
	return out, nil
}

// sources are the sources of one registry of a list.
func (e registryEntry) sources(host string) ([]Source, error) {
	var out []Source
	common, err := e.common(host)
	if err != nil {
		return nil, err
	}
	add := func(repo string, fill func(*Source) error) error {
		ref := remote.TransportPrefix + host + "/" + repo
		r, err := remote.ParseReference(ref)
		if err != nil || r.Tag != "" || r.Digest != "" {
			return fmt.Errorf("%w: %s: repository %q: give tags in the list, not in the name", ErrInvalidList, host, repo)
		}
		src := common
		src.Ref = ref
		if err := fill(&src); err != nil {
			return err
		}
		out = append(out, src)
		return nil
	}
	for _, repo := range sortedKeys(e.Images) {
		tags := e.Images[repo]
		err := add(repo, func(s *Source) error {
			for _, t := range tags {
				if t == "" {
					return fmt.Errorf("%w: %s/%s: an empty tag", ErrInvalidList, host, repo)
				}
			}
			s.List = append([]string(nil), tags...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, repo := range sortedKeys(e.ImagesByTagRegex) {
		expr := e.ImagesByTagRegex[repo]
		err := add(repo, func(s *Source) error {
			re, err := regexp.Compile(expr)
			if err != nil {
				return fmt.Errorf("%w: %s/%s: images-by-tag-regex: %v", ErrInvalidList, host, repo, err)
			}
			s.Tags = re
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, repo := range sortedKeys(e.ImagesBySemver) {
		expr := e.ImagesBySemver[repo]
		err := add(repo, func(s *Source) error {
			c, err := parseConstraint(expr)
			if err != nil {
				return fmt.Errorf("%w: %s/%s: images-by-semver: %v", ErrInvalidList, host, repo, err)
			}
			s.Match = c.match
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// common turns a registry's settings into the options of its sources.
func (e registryEntry) common(host string) (Source, error) {
	var s Source
	for _, p := range e.Platforms {
		pl, err := layout.ParsePlatform(p)
		if err != nil {
			return s, fmt.Errorf("%w: %s: platforms: %v", ErrInvalidList, host, err)
		}
		s.Platforms = append(s.Platforms, pl)
	}
	if e.TLSVerify != nil && !*e.TLSVerify {
		s.Registry = append(s.Registry, remote.WithInsecure())
	}
	if e.CertDir != "" {
		s.Registry = append(s.Registry, remote.WithCertDir(e.CertDir))
	}
	if c := e.Credentials; c != nil {
		store := credentials.NewMemoryStore()
		cred := auth.Credential{Username: c.Username, Password: c.Password}
		ref, err := remote.ParseReference(host + "/x")
		if err != nil {
			return s, fmt.Errorf("%w: registry %q: %v", ErrInvalidList, host, err)
		}
		for _, h := range []string{ref.Domain, ref.Host()} {
			_ = store.Put(context.Background(), h, cred)
		}
		s.Registry = append(s.Registry, remote.WithCredentials(store))
	}
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// constraint is an images-by-semver entry: tags that are semantic
// versions (a leading v allowed) within a range such as ">= 1.2, < 2".
type constraint struct{ c *semver.Constraints }

func parseConstraint(expr string) (constraint, error) {
	c, err := semver.NewConstraint(expr)
	if err != nil {
		return constraint{}, err
	}
	return constraint{c}, nil
}

func (c constraint) match(tag string) bool {
	v, err := semver.NewVersion(tag)
	return err == nil && c.c.Check(v)
}
