// Package mirror copies many images at once into one place, and keeps it
// up to date: `strata sync`. Sources are registry repositories (every
// tag, or those a pattern or a list names), single registry images,
// layouts and archives; the destination is a layout, an archive or a
// registry (under a prefix).
//
// Into a layout, every image is named by its full name
// (registry.example/team/app:v1) and blobs are shared. A second run
// moves nothing it has: an unchanged registry tag costs one request
// (remote.PullNewer), blobs the layout holds are never fetched, and an
// interrupted run resumes from what was verified (remote's partial
// downloads). Manifests and indexes are stored as the source serves them,
// so digests are kept from registry to layout to archive to layout to
// registry.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout/archive"
	"github.com/strata-oci/strata/layout/remote"
)

// ErrInvalidSource means a source or destination cannot be synced as
// given.
var ErrInvalidSource = errors.New("invalid sync source")

// ErrNameClash means two different images would get one name at the
// destination.
var ErrNameClash = errors.New("two images would get the same name")

// Source is one SOURCE of a sync.
type Source struct {
	// Ref is docker://HOST/REPO (a repository: its tags),
	// docker://HOST/REPO:TAG or @DIGEST (one image), oci:DIR[:REF] or
	// DIR (a layout: every image, or REF), or oci-archive:FILE,
	// docker-archive:FILE (every image of the archive).
	Ref string
	// Tags, for a repository, keeps the tags it matches.
	Tags *regexp.Regexp
	// Match, for a repository, keeps the tags it accepts (a list's
	// images-by-semver).
	Match func(tag string) bool
	// List, for a repository, names the tags or digests to copy instead
	// of listing them.
	List []string
	// Platforms, when set, replaces Options.Platforms for this source.
	Platforms []ocispec.Platform
	// Registry are connection options for this source's registry (a list
	// file's tls-verify, cert-dir, credentials), after Options.Registry.
	Registry []remote.Option
}

// Options configure Sync.
type Options struct {
	// Platforms cuts multi-platform images to these platforms; with none
	// they are kept whole (a docker-archive destination, which holds one
	// platform per image, takes the host's).
	Platforms []ocispec.Platform
	// Jobs is how many images, and blobs of each, move at once (at least
	// 1; default 4).
	Jobs int
	// DryRun finds out what would move, and its size, moving nothing.
	DryRun bool
	// Referrers carries each image's referrers (signatures, SBOMs,
	// attestations, cosign's tags) along, recursively (see
	// remote.WithReferrers, transport.Options.Referrers). A dry run
	// plans the images alone.
	Referrers bool
	// Scoped names images pushed to a registry by their whole source
	// name (REGISTRY/PREFIX/source.example/team/app:v1) instead of the
	// last part of their repository (REGISTRY/PREFIX/app:v1), as skopeo
	// sync --scoped.
	Scoped bool
	// Registry are connection options for every registry (credentials,
	// TLS, remote.WithLocationCache).
	Registry []remote.Option
	// Progress is told of every blob moved to or from a registry; it is
	// called from several goroutines at once.
	Progress func(remote.Progress)
	// OnBlob is told of every blob copied between layouts and archives,
	// one call at a time.
	OnBlob func(ocispec.Descriptor, blob.CopyMethod)
	// OnImage is told of every image done (or planned), one call at a
	// time.
	OnImage func(Result)
	// StagingDir is where images bound for a registry from an archive or
	// another registry are staged (a layout made there and removed);
	// default the system's temporary directory.
	StagingDir string
}

// Status is what happened to one image.
type Status string

// Image statuses.
const (
	Copied    Status = "copied"    // blobs or names moved
	Unchanged Status = "unchanged" // the destination had it under its name
	Planned   Status = "planned"   // a dry run: it would be copied
)

// Result is one image of a sync.
type Result struct {
	// Source names where it came from (docker://..., oci:DIR:NAME).
	Source string `json:"source"`
	// Name is its name at the destination ("" for an unnamed image).
	Name   string        `json:"name,omitempty"`
	Digest digest.Digest `json:"digest"`
	Status Status        `json:"status"`
	// Blobs and Bytes are what moved (or, in a dry run, would move).
	Blobs int   `json:"blobs"`
	Bytes int64 `json:"bytes"`
}

// Summary is what a sync did.
type Summary struct {
	Destination string   `json:"destination"`
	DryRun      bool     `json:"dryRun,omitempty"`
	Images      []Result `json:"images"`
	// Copied counts the images copied (in a dry run, those that would
	// be), Unchanged those DEST held already.
	Copied    int   `json:"copied"`
	Unchanged int   `json:"unchanged"`
	Blobs     int   `json:"blobs"`
	Bytes     int64 `json:"bytes"`
}

// add records r; safe for concurrent use through s.mu.
func (s *syncer) add(r Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.Images = append(s.sum.Images, r)
	switch r.Status {
	case Unchanged:
		s.sum.Unchanged++
	default:
		s.sum.Copied++
	}
	s.sum.Blobs += r.Blobs
	s.sum.Bytes += r.Bytes
	if s.o.OnImage != nil {
		s.o.OnImage(r)
	}
}

// syncer is one Sync.
type syncer struct {
	o       Options
	clients map[*Source]*remote.Client
	base    *remote.Client
	mu      sync.Mutex
	sum     Summary
	onBlob  func(ocispec.Descriptor, blob.CopyMethod)
	// planned are the blobs a dry run has counted already: each is
	// counted once, with the first image that needs it.
	planned map[digest.Digest]bool
}

// countPlan counts the blobs of a dry run's plan that no image before
// needed.
func (s *syncer) countPlan(missing []ocispec.Descriptor) (n int, size int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.planned == nil {
		s.planned = map[digest.Digest]bool{}
	}
	for _, d := range missing {
		if !s.planned[d.Digest] {
			s.planned[d.Digest] = true
			n++
			size += d.Size
		}
	}
	return n, size
}

// Sync copies the images of srcs to dest: a layout (oci:DIR or DIR), an
// archive (oci-archive:FILE, docker-archive:FILE, written whole at the
// end) or a registry (docker://REGISTRY[/PREFIX]). It returns what it did
// so far, also on error. An interrupted sync leaves every image it
// finished named, and the next one goes on from there.
func Sync(ctx context.Context, srcs []Source, dest string, o Options) (*Summary, error) {
	if o.Jobs < 1 {
		o.Jobs = 4
	}
	if len(srcs) == 0 {
		return nil, fmt.Errorf("%w: no source", ErrInvalidSource)
	}
	s := &syncer{o: o, clients: map[*Source]*remote.Client{}}
	s.sum.Destination, s.sum.DryRun = dest, o.DryRun
	s.sum.Images = []Result{}
	var onMu sync.Mutex
	s.onBlob = func(d ocispec.Descriptor, how blob.CopyMethod) {
		if o.OnBlob != nil {
			onMu.Lock()
			defer onMu.Unlock()
			o.OnBlob(d, how)
		}
	}
	base := append(append([]remote.Option(nil), o.Registry...), remote.WithConcurrency(o.Jobs))
	s.base = remote.NewClient(base...)
	for i := range srcs {
		if len(srcs[i].Registry) > 0 {
			s.clients[&srcs[i]] = remote.NewClient(append(append([]remote.Option(nil), base...), srcs[i].Registry...)...)
		}
	}
	d, err := parseDest(dest)
	if err != nil {
		return nil, err
	}
	switch d.kind {
	case toLayout:
		err = s.intoLayoutDir(ctx, srcs, d.path)
	case toArchive:
		err = s.intoArchive(ctx, srcs, d)
	case toRegistry:
		err = s.intoRegistry(ctx, srcs, d)
	}
	// Images finish in any order; the summary lists them by name.
	sort.SliceStable(s.sum.Images, func(i, j int) bool {
		a, b := s.sum.Images[i], s.sum.Images[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Source < b.Source
	})
	return &s.sum, err
}

func (s *syncer) client(src *Source) *remote.Client {
	if c, ok := s.clients[src]; ok {
		return c
	}
	return s.base
}

// destKind is what a destination is.
type destKind int

const (
	toLayout destKind = iota
	toArchive
	toRegistry
)

type destination struct {
	kind   destKind
	path   string         // layout directory or archive file
	format archive.Format // archives
	// registry and prefix of a registry destination.
	registry, prefix string
}

func parseDest(s string) (destination, error) {
	switch {
	case strings.HasPrefix(s, remote.TransportPrefix):
		rest := strings.TrimSuffix(strings.TrimPrefix(s, remote.TransportPrefix), "/")
		host, prefix, _ := strings.Cut(rest, "/")
		if host == "" || strings.ContainsAny(prefix, "@:") {
			return destination{}, fmt.Errorf("%w: destination %q: a registry destination is docker://REGISTRY[/PREFIX]", ErrInvalidSource, s)
		}
		if prefix != "" {
			if _, err := remote.ParseReference(host + "/" + prefix); err != nil {
				return destination{}, fmt.Errorf("%w: destination %q: %v", ErrInvalidSource, s, err)
			}
		}
		return destination{kind: toRegistry, registry: host, prefix: prefix}, nil
	case strings.HasPrefix(s, string(archive.OCI)+":"), strings.HasPrefix(s, string(archive.Docker)+":"):
		f, p, _ := strings.Cut(s, ":")
		if p == "" || p == "-" {
			return destination{}, fmt.Errorf("%w: destination %q: name the archive file", ErrInvalidSource, s)
		}
		return destination{kind: toArchive, path: p, format: archive.Format(f)}, nil
	}
	p := strings.TrimPrefix(s, "oci:")
	if p == "" || strings.Contains(p, ":") {
		return destination{}, fmt.Errorf("%w: destination %q: a layout destination is a directory (oci:DIR), without a name", ErrInvalidSource, s)
	}
	return destination{kind: toLayout, path: p}, nil
}

// sourceKind is what a source is.
type sourceKind int

const (
	fromRegistry sourceKind = iota
	fromLayout
	fromArchive
)

func kindOf(ref string) sourceKind {
	switch {
	case strings.HasPrefix(ref, remote.TransportPrefix):
		return fromRegistry
	case strings.HasPrefix(ref, string(archive.OCI)+":"), strings.HasPrefix(ref, string(archive.Docker)+":"):
		return fromArchive
	}
	return fromLayout
}

// regItem is one registry image to copy.
type regItem struct {
	src *Source
	ref remote.Reference
}

// name is the image's name in a layout: its full reference. A digest
// reference names no tag; the layout records it unnamed.
func (it regItem) name() string {
	if it.ref.Digest != "" {
		return ""
	}
	return it.ref.String()
}

// expand lists the registry images of the registry sources.
func (s *syncer) expand(ctx context.Context, srcs []Source) ([]regItem, error) {
	var out []regItem
	for i := range srcs {
		src := &srcs[i]
		if kindOf(src.Ref) != fromRegistry {
			continue
		}
		ref, err := remote.ParseReference(src.Ref)
		if err != nil {
			return nil, err
		}
		if ref.Tag != "" || ref.Digest != "" {
			if len(src.List) > 0 || src.Tags != nil || src.Match != nil {
				return nil, fmt.Errorf("%w %s: a tag list or pattern applies to a repository, not to one image", ErrInvalidSource, src.Ref)
			}
			out = append(out, regItem{src: src, ref: ref})
			continue
		}
		tags := src.List
		if len(tags) == 0 {
			if tags, err = s.client(src).Tags(ctx, src.Ref); err != nil {
				return nil, err
			}
		}
		n := 0
		for _, t := range tags {
			r := ref
			if d := digest.Digest(t); d.Validate() == nil {
				r.Digest = d
			} else {
				if src.Tags != nil && !src.Tags.MatchString(t) || src.Match != nil && !src.Match(t) {
					continue
				}
				r.Tag = t
				if _, err := remote.ParseReference(r.String()); err != nil {
					return nil, fmt.Errorf("%w %s: tag %q: %v", ErrInvalidSource, src.Ref, t, err)
				}
			}
			out = append(out, regItem{src: src, ref: r})
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%w %s: no tag to copy (%d listed)", ErrInvalidSource, src.Ref, len(tags))
		}
	}
	return out, nil
}

// platformsOf says which platforms to copy of src's images.
func (s *syncer) platformsOf(src *Source) []ocispec.Platform {
	if len(src.Platforms) > 0 {
		return src.Platforms
	}
	return s.o.Platforms
}

// each runs fn for every item on up to Jobs goroutines, stopping at the
// first error.
func each[T any](ctx context.Context, jobs int, items []T, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan T)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range min(jobs, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range ch {
				if err := fn(ctx, it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// counter counts the blobs and bytes one transfer moves, passing every
// event on.
type counter struct {
	mu    sync.Mutex
	blobs int
	bytes int64
	next  func(remote.Progress)
}

func (c *counter) progress(p remote.Progress) {
	if p.State == remote.StateDone || p.State == remote.StateMounted {
		c.mu.Lock()
		c.blobs++
		if p.State == remote.StateDone {
			c.bytes += p.Descriptor.Size
		}
		c.mu.Unlock()
	}
	if c.next != nil {
		c.next(p)
	}
}

// sanitizeRepo makes a directory's name a repository name component.
func sanitizeRepo(dir string) string {
	base := strings.ToLower(filepath.Base(filepath.Clean(dir)))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" {
		out = "images"
	}
	return out
}
