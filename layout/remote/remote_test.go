package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

func TestParseReference(t *testing.T) {
	d := digest.FromString("x")
	tests := []struct {
		in                string
		domain, repo, tag string
		dig               digest.Digest
		str               string
		host              string
		wantErr           bool
	}{
		{in: "busybox", domain: "docker.io", repo: "library/busybox", str: "docker.io/library/busybox", host: "registry-1.docker.io"},
		{in: "docker://busybox:1.36", domain: "docker.io", repo: "library/busybox", tag: "1.36", str: "docker.io/library/busybox:1.36", host: "registry-1.docker.io"},
		{in: "localhost:5000/a/b:v1", domain: "localhost:5000", repo: "a/b", tag: "v1", str: "localhost:5000/a/b:v1", host: "localhost:5000"},
		{in: "127.0.0.1:5000/x@" + d.String(), domain: "127.0.0.1:5000", repo: "x", dig: d, str: "127.0.0.1:5000/x@" + d.String(), host: "127.0.0.1:5000"},
		{in: "ghcr.io/org/tool:1@" + d.String(), domain: "ghcr.io", repo: "org/tool", tag: "1", dig: d, str: "ghcr.io/org/tool:1@" + d.String(), host: "ghcr.io"},
		{in: "[::1]:5000/x:y", domain: "[::1]:5000", repo: "x", tag: "y", str: "[::1]:5000/x:y", host: "[::1]:5000"},
		{in: "", wantErr: true},
		{in: "docker://", wantErr: true},
		{in: "Upper/Case", wantErr: true},
		{in: "a/b:bad tag", wantErr: true},
		{in: "a@sha256:123", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidReference) {
					t.Fatalf("ParseReference(%q) = %+v, %v; want ErrInvalidReference", tt.in, r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Domain != tt.domain || r.Repository != tt.repo || r.Tag != tt.tag || r.Digest != tt.dig {
				t.Fatalf("ParseReference(%q) = %+v", tt.in, r)
			}
			if r.String() != tt.str || r.Host() != tt.host {
				t.Fatalf("String() = %q, Host() = %q", r.String(), r.Host())
			}
		})
	}
}

func TestWithDefaultTag(t *testing.T) {
	r, _ := ParseReference("localhost:5000/a")
	if got := r.WithDefaultTag().String(); got != "localhost:5000/a:latest" {
		t.Fatal(got)
	}
	r, _ = ParseReference("localhost:5000/a@" + digest.FromString("x").String())
	if r.WithDefaultTag().Tag != "" {
		t.Fatal("a digest reference got a tag")
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"busybox", "docker://localhost:5000/a/b:v1", "x@sha256:" + strings.Repeat("a", 64), "[::1]:1/a", ":::", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			return
		}
		// What parses must print as something that parses to the same.
		r2, err := ParseReference(r.String())
		if err != nil {
			t.Fatalf("%q -> %q does not parse: %v", s, r.String(), err)
		}
		if r2 != r {
			t.Fatalf("%q -> %+v -> %+v", s, r, r2)
		}
	})
}

func TestIsLocalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "localhost:5000": true, "127.0.0.1:5000": true, "127.0.0.2": true,
		"[::1]:5000": true, "registry.localhost:80": true,
		"192.0.2.1:5000": false, "example.com": false, "localhost.example.com": false, "10.0.0.1": false,
	} {
		if got := isLocalHost(host); got != want {
			t.Errorf("isLocalHost(%q) = %v", host, got)
		}
	}
}

func TestNormalizeRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"localhost:5000": "localhost:5000", "https://ghcr.io": "ghcr.io", "docker://r.example/a/b": "r.example",
		"index.docker.io": "docker.io", "https://index.docker.io/v1/": "docker.io",
	} {
		got, err := normalizeRegistry(in)
		if err != nil || got != want {
			t.Errorf("normalizeRegistry(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "https://", "a b"} {
		if _, err := normalizeRegistry(bad); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("normalizeRegistry(%q) = %v", bad, err)
		}
	}
}

func TestParsePullMode(t *testing.T) {
	for _, s := range []string{"always", "missing", "never", "newer"} {
		if m, err := ParsePullMode(s); err != nil || string(m) != s {
			t.Errorf("ParsePullMode(%q) = %q, %v", s, m, err)
		}
	}
	if _, err := ParsePullMode("sometimes"); err == nil {
		t.Error("ParsePullMode accepted sometimes")
	}
}

// TestProbe checks the HTTPS-or-HTTP decision against a plain HTTP
// server reached under a name that is not this machine's.
func TestProbe(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	hc := &http.Client{Transport: tr}
	remoteHost := "registry.example:" + port
	localHost := "127.0.0.1:" + port

	tests := []struct {
		name      string
		o         options
		host      string
		wantPlain bool
		wantErr   error
	}{
		{"remote refused", options{}, remoteHost, false, ErrPlainHTTPRefused},
		{"remote insecure", options{insecure: true}, remoteHost, true, nil},
		{"remote plain-http", options{plainHTTP: true}, remoteHost, true, nil},
		{"loopback", options{}, localHost, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var warned []string
			tt.o.warn = func(s string) { warned = append(warned, s) }
			plain, err := tt.o.probe(context.Background(), hc, tt.host)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("probe = %v, want %v", err, tt.wantErr)
				}
				// The flags to get past it are the CLI's to name
				// (cmd/strata/hints.go).
				if !strings.Contains(err.Error(), "does not answer HTTPS") || strings.Contains(err.Error(), "--") {
					t.Fatalf("the error does not name the condition alone: %v", err)
				}
				return
			}
			if err != nil || plain != tt.wantPlain {
				t.Fatalf("probe = %v, %v", plain, err)
			}
			if tt.o.insecure && len(warned) == 0 {
				t.Fatal("no warning about plain HTTP")
			}
		})
	}
}

func TestLayoutStore(t *testing.T) {
	l, err := layout.Init(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &layoutStore{l: l, o: buildOptions(nil)}
	ctx := context.Background()
	data := []byte("layer bytes")
	good := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: int64(len(data))}

	// Wrong content for a digest never becomes visible.
	bad := good
	bad.Digest = digest.FromString("other")
	if err := s.Push(ctx, bad, bytes.NewReader(data)); !errors.Is(err, blob.ErrDigestMismatch) {
		t.Fatalf("push with a wrong digest: %v", err)
	}
	if ok, _ := s.Exists(ctx, bad); ok {
		t.Fatal("a mismatching blob became visible")
	}
	short := good
	short.Size++
	if err := s.Push(ctx, short, bytes.NewReader(data)); !errors.Is(err, blob.ErrSizeMismatch) {
		t.Fatalf("push with a wrong size: %v", err)
	}
	if err := s.Push(ctx, good, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, good); !ok {
		t.Fatal("pushed blob missing")
	}

	// A manifest whose config is missing does not count as present, so a
	// copy does not skip what lies below it.
	cfg := layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(digest.FromString("diff")); err != nil {
		t.Fatal(err)
	}
	md, err := l.PutImage(cfg, []ocispec.Descriptor{good}, nil)
	if err != nil {
		t.Fatal(err)
	}
	md.Platform = nil
	if ok, _ := s.Exists(ctx, md); !ok {
		t.Fatal("complete manifest reported missing")
	}
	img, err := l.ReadImage(md)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Blobs().Delete(img.Manifest.Config.Digest); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Exists(ctx, md); ok {
		t.Fatal("manifest with a missing config reported present")
	}
	if err := missingBlob(l, md); err == nil || !strings.Contains(err.Error(), img.Manifest.Config.Digest.String()) {
		t.Fatalf("missingBlob = %v", err)
	}

	rc, err := s.Fetch(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("fetch = %q, %v", buf.Bytes(), err)
	}
	rc.Close()
}

// TestIdleTimeout checks that a registry that stops sending in the middle
// of a blob makes the transfer fail instead of hanging.
func TestIdleTimeout(t *testing.T) {
	old := idleTimeout
	idleTimeout = 300 * time.Millisecond
	defer func() { idleTimeout = old }()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		<-release
	}))
	defer srv.Close()
	defer close(release)
	host := srv.Listener.Addr().String()
	o := buildOptions([]Option{WithCredentials(credentials.NewMemoryStore())})
	sess, err := o.connect(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	if !sess.plain {
		t.Fatal("a loopback plain HTTP registry was not detected")
	}
	ref, _ := ParseReference(host + "/a/b:v1")
	repo, err := sess.repository(ref)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 1000)
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(data), Size: 1000}
	rc, err := repo.Fetch(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("reading a stalled blob: %v, want a timeout", err)
	}
}
