// Package remote moves images between an OCI image layout and a container
// registry (the distribution API that Docker Hub, distribution, Harbor,
// quay and GHCR speak).
//
// The HTTP, authentication and upload protocol is oras-go's; this package
// adds what strata needs around it: every pulled blob is verified before
// it becomes visible, blobs already present on the receiving side are
// neither fetched nor uploaded again, a large blob whose download was
// interrupted continues from the byte it stopped at, the reference is
// tagged in the layout only after the whole image is there, and plain
// HTTP is used only for loopback registries or when the caller says the
// network is trusted.
package remote

import (
	"errors"
	"fmt"
	"sync"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// Sentinel errors, for errors.Is.
var (
	// ErrInvalidReference means a registry reference is malformed.
	ErrInvalidReference = errors.New("invalid registry reference")
	// ErrPlainHTTPRefused means a registry does not answer HTTPS and plain
	// HTTP was not allowed for it (WithPlainHTTP, WithInsecure).
	ErrPlainHTTPRefused = errors.New("plain HTTP not allowed")
	// ErrPartialIndex means a multi-platform image to push has manifests
	// whose blobs the layout lacks (a pull of one platform keeps the
	// index whole); WithPlatform pushes the platforms it holds.
	ErrPartialIndex = errors.New("the layout holds only part of this multi-platform image")
	// ErrNotPresent means the pull mode is "never" and the image is not in
	// the layout.
	ErrNotPresent = errors.New("image not present locally")
	// ErrDigestConflict means a push destination names a digest that is not
	// the digest of the image being pushed.
	ErrDigestConflict = errors.New("digest does not match the image")
	// ErrNoCredentialStore means Login or Logout was given no place to
	// keep credentials (WithAuthFile, WithCredentials).
	ErrNoCredentialStore = errors.New("no credential store")
)

// PullMode says when Pull contacts the registry.
type PullMode string

// Pull modes, as nerdctl and podman name them.
const (
	// PullAlways contacts the registry every time; blobs already in the
	// layout are still not downloaded again.
	PullAlways PullMode = "always"
	// PullMissing does nothing when the layout already holds the named
	// image, complete, for the requested platform(s).
	PullMissing PullMode = "missing"
	// PullNever never contacts the registry and fails with ErrNotPresent
	// when the image is not in the layout.
	PullNever PullMode = "never"
	// PullNewer asks the registry what the reference names now (one
	// request for a manifest or a whole index) and does nothing more when
	// the layout already holds that image, complete, under the name, as
	// podman's --pull=newer: an unchanged tag costs one request.
	PullNewer PullMode = "newer"
)

// ParsePullMode checks a --pull flag value.
func ParsePullMode(s string) (PullMode, error) {
	switch m := PullMode(s); m {
	case PullAlways, PullMissing, PullNever, PullNewer:
		return m, nil
	}
	return "", fmt.Errorf("invalid pull mode %q: use always, missing, newer or never", s)
}

// State is what happened to one blob during a transfer.
type State string

// Blob states reported to a progress callback.
const (
	StateCopying State = "copying" // the transfer of the blob starts
	StateDone    State = "done"    // the blob was transferred and verified
	StateExists  State = "exists"  // the other side had it: not transferred
	StateMounted State = "mounted" // the registry linked it from another repository
)

// Progress is one event of a transfer.
type Progress struct {
	Descriptor ocispec.Descriptor
	State      State
	// Bytes is how many bytes of the blob have moved so far, reported while
	// State is StateCopying.
	Bytes int64
}

// Option configures Pull, Push, Login and Logout.
type Option func(*options)

type options struct {
	platforms    []ocispec.Platform
	allPlatforms bool
	insecure     bool
	plainHTTP    bool
	certDir      string
	store        credentials.Store
	authFile     string
	// fallbackAuthFiles are read, never written, after authFile.
	fallbackAuthFiles []string
	concurrency       int
	progress          func(Progress)
	warn              func(string)
	mountFrom         []string
	pullMode          PullMode
	byDigest          bool
	userAgent         string
	// sessions, set by a Client, keeps one session per registry host
	// across calls.
	sessions *sessionCache
	// locations records where blobs are and suggests mounts (see
	// LocationCache).
	locations *LocationCache
	// unchanged, set by a PullNewer pull, says whether the layout holds
	// the image about to be copied already, under its name.
	unchanged func(ocispec.Descriptor) bool
	// indexOnly applies platforms to indexes alone: a single-platform
	// image is taken whatever its platform.
	indexOnly bool
	// inflight, set by a Client, makes its concurrent pulls of one blob
	// into one layout wait for each other instead of fetching it twice.
	inflight *keyedMutex
	// found are the blobs a pull found in the layout once it came to
	// store them (another pull stored them meanwhile): reported as
	// existing, not as downloaded.
	found     *sync.Map
	referrers bool
	// referrerList, when haveReferrerList, is what Push sends as the
	// image's referrers (WithReferrerList).
	referrerList     []layout.Referrer
	haveReferrerList bool
}

func buildOptions(opts []Option) *options {
	o := &options{concurrency: 4, pullMode: PullAlways, userAgent: "strata", found: &sync.Map{}}
	for _, fn := range opts {
		fn(o)
	}
	return o
}

// WithPlatform selects the image for platform p from a multi-platform
// image; the default is the host's platform. Given more than once, the
// platforms are copied with an index that lists only them (a new index,
// so with a new digest). Push sends only the selected platforms too.
func WithPlatform(p ocispec.Platform) Option {
	return func(o *options) { o.platforms = append(o.platforms, p) }
}

// WithPlatformsOfIndexes makes WithPlatform select from multi-platform
// images only: an image of one platform is copied whatever it is, as
// skopeo sync does, rather than refused.
func WithPlatformsOfIndexes() Option { return func(o *options) { o.indexOnly = true } }

// WithAllPlatforms copies a multi-platform image whole, index included, so
// that its digest stays the same.
func WithAllPlatforms() Option { return func(o *options) { o.allPlatforms = true } }

// WithInsecure skips TLS certificate verification and allows falling back
// to plain HTTP when the registry does not speak HTTPS.
func WithInsecure() Option { return func(o *options) { o.insecure = true } }

// WithPlainHTTP talks plain HTTP to the registry from the start.
func WithPlainHTTP() Option { return func(o *options) { o.plainHTTP = true } }

// WithCertDir adds the certificates of dir, laid out as Docker's and
// podman's certs.d/HOST directories: *.crt files are trusted CAs and each
// NAME.cert with NAME.key is a client certificate. Without it, those
// per-host directories under /etc/containers/certs.d and
// /etc/docker/certs.d are read when they exist. The system roots (and
// SSL_CERT_FILE) are always trusted.
func WithCertDir(dir string) Option { return func(o *options) { o.certDir = dir } }

// WithCredentials uses store for registry credentials instead of an auth
// file.
func WithCredentials(store credentials.Store) Option {
	return func(o *options) { o.store = store }
}

// WithAuthFile keeps credentials in the docker-config-format file path
// (docker's is $DOCKER_CONFIG/config.json or ~/.docker/config.json):
// requests read them, Login and Logout write them, through the
// credential helpers the file names. Without it (or WithCredentials)
// requests are anonymous and Login and Logout fail with
// ErrNoCredentialStore.
func WithAuthFile(path string) Option { return func(o *options) { o.authFile = path } }

// WithFallbackAuthFiles reads the credentials of a registry the auth file
// has none for from these files, in order (podman's, buildah's and
// skopeo's auth.json are in the same format). They are never written.
func WithFallbackAuthFiles(paths ...string) Option {
	return func(o *options) { o.fallbackAuthFiles = append(o.fallbackAuthFiles, paths...) }
}

// WithConcurrency sets how many blobs move at once (default 4).
func WithConcurrency(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.concurrency = n
		}
	}
}

// WithProgress calls fn for every blob event. fn is called from several
// goroutines at once and must be safe for that.
func WithProgress(fn func(Progress)) Option { return func(o *options) { o.progress = fn } }

// WithWarnings calls fn with notices worth telling a user, such as a
// fallback to plain HTTP.
func WithWarnings(fn func(string)) Option { return func(o *options) { o.warn = fn } }

// WithMountFrom names repositories on the destination registry that may
// already hold the pushed blobs; the registry is asked to link blobs from
// them instead of receiving them again. Repositories of the names the
// pushed image already has in the layout are tried as well.
func WithMountFrom(repos ...string) Option {
	return func(o *options) { o.mountFrom = append(o.mountFrom, repos...) }
}

// WithPullMode sets the pull mode (default PullAlways).
func WithPullMode(m PullMode) Option { return func(o *options) { o.pullMode = m } }

// WithByDigest pushes without a tag: the manifest is stored under its
// digest only.
func WithByDigest() Option { return func(o *options) { o.byDigest = true } }

// WithUserAgent sets the User-Agent header of registry requests.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

func (o *options) warnf(format string, a ...any) {
	if o.warn != nil {
		o.warn(fmt.Sprintf(format, a...))
	}
}

func (o *options) report(p Progress) {
	if o.progress != nil {
		o.progress(p)
	}
}

func (o *options) markFound(d ocispec.Descriptor) {
	if o.found != nil {
		o.found.Store(d.Digest, true)
	}
}

func (o *options) isFound(d ocispec.Descriptor) bool {
	if o.found == nil {
		return false
	}
	_, ok := o.found.Load(d.Digest)
	return ok
}
