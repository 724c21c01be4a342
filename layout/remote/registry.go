package remote

import (
	"context"
	"fmt"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// Client reaches registries with one set of options and keeps, for each
// registry it has talked to, one connection pool, token cache and
// protocol (HTTPS or plain HTTP) for all its calls: copying many images
// from one registry probes it once and reuses its connections. It is safe
// for concurrent use. Pull, Push and Fetch of the package are a Client
// used once.
type Client struct {
	opts     []Option
	sessions *sessionCache
	inflight *keyedMutex
}

// NewClient returns a client whose calls all take opts (connection,
// credentials, progress, location cache); each call may add more (a
// platform, a pull mode). Connection options belong here: a registry's
// session is made by the first call that reaches it.
func NewClient(opts ...Option) *Client {
	return &Client{opts: opts, sessions: &sessionCache{m: map[string]*sessionSlot{}}, inflight: &keyedMutex{m: map[string]*keyedEntry{}}}
}

func (c *Client) options(extra []Option) *options {
	o := buildOptions(append(append([]Option(nil), c.opts...), extra...))
	o.sessions = c.sessions
	o.inflight = c.inflight
	return o
}

// Pull is the package's Pull through c.
func (c *Client) Pull(ctx context.Context, l *layout.Layout, src, name string, opts ...Option) (*Result, error) {
	return pull(ctx, l, src, name, c.options(opts))
}

// Fetch is the package's Fetch through c.
func (c *Client) Fetch(ctx context.Context, l *layout.Layout, src string, opts ...Option) (*Result, error) {
	ref, err := ParseReference(src)
	if err != nil {
		return nil, err
	}
	return fetch(ctx, l, ref.WithDefaultTag(), c.options(opts))
}

// Push is the package's Push through c.
func (c *Client) Push(ctx context.Context, l *layout.Layout, srcRef, dst string, opts ...Option) (*Result, error) {
	return push(ctx, l, srcRef, dst, c.options(opts))
}

// Resolve asks the registry which manifest or index ref names now (one
// HEAD request), without fetching it.
func (c *Client) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	r = r.WithDefaultTag()
	o := c.options(nil)
	sess, err := o.connect(ctx, r.Host())
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	repo, err := sess.repository(r)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return resolveRoot(ctx, repo, r)
}

// Tags lists the tags of repository repo (HOST/REPO, docker://
// optional), in the registry's order, page by page as the registry
// serves them.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	r, err := ParseReference(repo)
	if err != nil {
		return nil, err
	}
	if r.Tag != "" || r.Digest != "" {
		return nil, fmt.Errorf("%w %q: a repository has no tag or digest", ErrInvalidReference, repo)
	}
	o := c.options(nil)
	sess, err := o.connect(ctx, r.Host())
	if err != nil {
		return nil, err
	}
	rr, err := sess.repository(r)
	if err != nil {
		return nil, err
	}
	var out []string
	err = rr.Tags(ctx, "", func(tags []string) error {
		out = append(out, tags...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", r.Name(), explain(err, r.Domain))
	}
	return out, nil
}

// sessionCache holds a Client's sessions, one per registry host.
type sessionCache struct {
	mu sync.Mutex
	m  map[string]*sessionSlot
}

// sessionSlot is made once: callers reaching a host at the same time wait
// for one probe.
type sessionSlot struct {
	once sync.Once
	s    *session
	err  error
}

// session returns the cached session of host, making it with make the
// first time. A failure is not kept: the next call tries again.
func (c *sessionCache) session(host string, make func() (*session, error)) (*session, error) {
	c.mu.Lock()
	slot, ok := c.m[host]
	if !ok {
		slot = &sessionSlot{}
		c.m[host] = slot
	}
	c.mu.Unlock()
	slot.once.Do(func() { slot.s, slot.err = make() })
	if slot.err != nil {
		c.mu.Lock()
		if c.m[host] == slot {
			delete(c.m, host)
		}
		c.mu.Unlock()
	}
	return slot.s, slot.err
}

// keyedMutex is a mutex per key, held by one goroutine at a time.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock takes key's mutex and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
