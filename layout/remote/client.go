package remote

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// Default per-host certificate directories, as podman and docker read them.
var defaultCertDirs = []string{"/etc/containers/certs.d", "/etc/docker/certs.d"}

// tlsConfig builds the TLS settings for host.
func (o *options) tlsConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.insecure {
		cfg.InsecureSkipVerify = true
		return cfg, nil
	}
	dirs := []string{o.certDir}
	if o.certDir == "" {
		dirs = nil
		for _, base := range defaultCertDirs {
			dirs = append(dirs, filepath.Join(base, host))
		}
	}
	for _, dir := range dirs {
		if err := loadCertDir(cfg, dir, o.certDir != ""); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// loadCertDir adds dir's CAs and client certificates to cfg. A missing
// directory is an error only when the user named it.
func loadCertDir(cfg *tls.Config, dir string, must bool) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !must {
			return nil
		}
		return fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".crt"):
			pem, err := os.ReadFile(p)
			if err != nil {
				return fmt.Errorf("read CA certificate %s: %w", p, err)
			}
			if cfg.RootCAs == nil {
				pool, err := x509.SystemCertPool()
				if err != nil || pool == nil {
					pool = x509.NewCertPool()
				}
				cfg.RootCAs = pool
			}
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("CA certificate %s: no PEM certificate in it", p)
			}
		case strings.HasSuffix(e.Name(), ".cert"):
			key := strings.TrimSuffix(p, ".cert") + ".key"
			cert, err := tls.LoadX509KeyPair(p, key)
			if err != nil {
				return fmt.Errorf("client certificate %s (key %s): %w", p, key, err)
			}
			cfg.Certificates = append(cfg.Certificates, cert)
		}
	}
	return nil
}

// idleTimeout is how long a connection may see no traffic at all before
// strata gives up on it: a registry that died without closing its
// connections must not hang a pull or a push forever.
var idleTimeout = 2 * time.Minute

// idleConn fails a read after idleTimeout without traffic in either
// direction. Writes count as traffic, so a long upload whose answer comes
// only at its end is not cut.
type idleConn struct {
	net.Conn
}

func (c *idleConn) Read(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(idleTimeout))
	return c.Conn.Write(p)
}

// session is a configured connection to one registry.
type session struct {
	o      *options
	host   string
	plain  bool
	client *auth.Client
	store  credentials.Store
}

// credentialStore returns the store credentials come from: the caller's,
// or the auth file with its credential helpers, with the fallback files
// behind it; nil (anonymous requests) when the caller gave none.
func (o *options) credentialStore() (credentials.Store, error) {
	if o.store != nil {
		return o.store, nil
	}
	if o.authFile == "" {
		return nil, nil
	}
	sopts := credentials.StoreOptions{AllowPlaintextPut: true, DetectDefaultNativeStore: true}
	s, err := credentials.NewStore(o.authFile, sopts)
	if err != nil {
		return nil, fmt.Errorf("load registry credentials from %s: %w", o.authFile, err)
	}
	var fallbacks []credentials.Store
	for _, p := range o.fallbackAuthFiles {
		if fb, err := credentials.NewStore(p, credentials.StoreOptions{}); err == nil {
			fallbacks = append(fallbacks, fb)
		}
	}
	if len(fallbacks) > 0 {
		return credentials.NewStoreWithFallbacks(s, fallbacks...), nil
	}
	return s, nil
}

// connect prepares a session with host: TLS settings, credentials, and
// whether to speak HTTPS or plain HTTP. A Client's calls share one.
func (o *options) connect(ctx context.Context, host string) (*session, error) {
	if o.sessions != nil {
		return o.sessions.session(host, func() (*session, error) { return o.newSession(ctx, host) })
	}
	return o.newSession(ctx, host)
}

func (o *options) newSession(ctx context.Context, host string) (*session, error) {
	tc, err := o.tlsConfig(host)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.ResponseHeaderTimeout = idleTimeout
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &idleConn{Conn: c}, nil
	}
	hc := &http.Client{Transport: retry.NewTransport(tr)}
	store, err := o.credentialStore()
	if err != nil {
		return nil, err
	}
	s := &session{o: o, host: host, store: store, client: &auth.Client{
		Client: hc,
		Header: http.Header{"User-Agent": {o.userAgent}},
		Cache:  auth.NewCache(),
	}}
	if store != nil {
		s.client.Credential = credentials.Credential(store)
	}
	s.plain, err = o.probe(ctx, hc, host)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// probe finds out whether host speaks HTTPS; when it does not, plain HTTP
// is used if it is allowed: for this machine's own addresses, with
// WithPlainHTTP, and with WithInsecure (as nerdctl does); otherwise the
// error wraps ErrPlainHTTPRefused.
func (o *options) probe(ctx context.Context, hc *http.Client, host string) (plain bool, err error) {
	if o.plainHTTP {
		return true, nil
	}
	herr := ping(ctx, hc, "https", host)
	if herr == nil {
		return false, nil
	}
	if !noHTTPS(herr) {
		// A certificate that does not verify stays in the chain as a
		// *tls.CertificateVerificationError.
		return false, fmt.Errorf("registry %s: %w", host, herr)
	}
	if !o.insecure && !isLocalHost(host) {
		return false, fmt.Errorf("registry %s does not answer HTTPS (%v): %w", host, herr, ErrPlainHTTPRefused)
	}
	if perr := ping(ctx, hc, "http", host); perr != nil {
		return false, fmt.Errorf("registry %s: HTTPS: %v; plain HTTP: %w", host, herr, perr)
	}
	if !isLocalHost(host) {
		o.warnf("registry %s does not speak HTTPS; using plain HTTP", host)
	}
	return true, nil
}

// ping asks for /v2/; any HTTP answer (401 included) shows the protocol
// works.
func ping(ctx context.Context, hc *http.Client, scheme, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return nil
}

// noHTTPS says whether err shows that nothing speaks HTTPS at the address:
// a plain HTTP answer to the TLS hello, or a refused connection (a registry
// on port 80 only).
func noHTTPS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || errors.Is(err, syscall.ECONNREFUSED) ||
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client")
}

// repository opens ref's repository in the session.
func (s *session) repository(ref Reference) (*remote.Repository, error) {
	repo := &remote.Repository{
		Client:    s.client,
		PlainHTTP: s.plain,
		Reference: registry.Reference{Registry: s.host, Repository: ref.Repository, Reference: ref.object()},
		// What oras-go reads whole from a response (a manifest whose
		// digest it must compute, tag lists, referrers): the layout's
		// manifest limit.
		MaxMetadataBytes: layout.MaxManifestSize,
		// Pushing a referrer to a registry without the referrers API
		// replaces the subject's fallback-tag index; the old one stays
		// untagged rather than deleted, as registries often refuse
		// deletes (distribution does by default).
		SkipReferrersGC: true,
	}
	if err := repo.Reference.ValidateRepository(); err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidReference, ref, err)
	}
	return repo, nil
}

// registry opens the session's registry, for login.
func (s *session) registry() (*remote.Registry, error) {
	reg, err := remote.NewRegistry(s.host)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrInvalidReference, s.host, err)
	}
	reg.Client = s.client
	reg.PlainHTTP = s.plain
	return reg, nil
}
