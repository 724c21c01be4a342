package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/testenv"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/crypto/bcrypt"
)

// regServer is a distribution 2.8 registry (Debian's docker-registry)
// serving on loopback for one test.
type regServer struct {
	t      *testing.T
	dir    string
	listen string // host:port it listens on
	tls    bool
	cmd    *exec.Cmd
	exited chan struct{}
	log    *bytes.Buffer
	// certDir holds ca.crt, for --cert-dir.
	certDir string
	caFile  string
	netns   string // network namespace it runs in; "" for this one
}

type regConfig struct {
	tls      bool
	user     string // with password: htpasswd auth
	password string
	ip       string // listen address; 127.0.0.1 by default
	// netns runs the registry in that network namespace (see regNetns),
	// listening on ip there.
	netns string
}

// regNetnsPort is the port a registry listens on in a namespace of its
// own: the namespace is new, so nothing else can hold it.
const regNetnsPort = 5000

// regFreePort returns a port nothing listens on at ip.
func regFreePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func regStart(t *testing.T, c regConfig) *regServer {
	t.Helper()
	needTool(t, "docker-registry")
	if c.ip == "" {
		c.ip = "127.0.0.1"
	}
	dir := t.TempDir()
	port := regNetnsPort
	if c.netns == "" {
		port = regFreePort(t, c.ip)
	}
	r := &regServer{t: t, dir: dir, tls: c.tls, netns: c.netns, listen: net.JoinHostPort(c.ip, fmt.Sprint(port))}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: strata-test-secret
`, filepath.Join(dir, "data"), r.listen)
	if c.tls {
		r.certDir = filepath.Join(dir, "certs")
		r.caFile = filepath.Join(r.certDir, "ca.crt")
		crt, key := regWriteCerts(t, r.certDir, filepath.Join(dir, "server"), c.ip)
		conf += fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", crt, key)
	}
	if c.user != "" {
		h, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(c.user+":"+string(h)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		conf += fmt.Sprintf("auth:\n  htpasswd:\n    realm: strata-test\n    path: %s\n", hp)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// start runs the registry and waits until /v2/ answers.
func (r *regServer) start() {
	t := r.t
	t.Helper()
	r.log = &bytes.Buffer{}
	argv := []string{"docker-registry", "serve", filepath.Join(r.dir, "config.yml")}
	if r.netns != "" {
		// ip netns exec execs the registry itself: r.cmd's pid is the
		// registry's, so kill stops it and nothing else lingers.
		argv = append([]string{"ip", "netns", "exec", r.netns}, argv...)
	}
	r.cmd = exec.Command(argv[0], argv[1:]...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start docker-registry: %v", err)
	}
	r.exited = make(chan struct{})
	go func(cmd *exec.Cmd, ch chan struct{}) { _ = cmd.Wait(); close(ch) }(r.cmd, r.exited)
	scheme := "http"
	if r.tls {
		scheme = "https"
	}
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer hc.CloseIdleConnections()
	for i := 0; i < 300; i++ {
		select {
		case <-r.exited:
			t.Fatalf("docker-registry exited at start:\n%s", r.log)
		default:
		}
		resp, err := hc.Get(scheme + "://" + r.listen + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.stop()
	t.Fatalf("docker-registry did not answer on %s:\n%s", r.listen, r.log)
}

// kill stops the registry at once, as a crash would.
func (r *regServer) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

func (r *regServer) stop() { r.kill() }

// regWriteCerts makes a CA (certDir/ca.crt) and a server certificate for
// ip and localhost signed by it, and returns the server's files.
func regWriteCerts(t *testing.T, certDir, prefix, ip string) (crtFile, keyFile string) {
	t.Helper()
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		t.Fatal(err)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "strata test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP(ip)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(p, typ string, b []byte) {
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(certDir, "ca.crt"), "CERTIFICATE", caDER)
	crtFile, keyFile = prefix+".crt", prefix+".key"
	write(crtFile, "CERTIFICATE", der)
	write(keyFile, "EC PRIVATE KEY", keyDER)
	return crtFile, keyFile
}

// regStrataEnv runs strata with extra environment variables and stdin.
func regStrataEnv(t *testing.T, env []string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run strata %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// regMustStrataEnv is regStrataEnv that requires exit 0.
func regMustStrataEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := regStrataEnv(t, env, nil, args...)
	if r.Code != 0 {
		t.Fatalf("strata %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// regTarLayer builds an uncompressed tar holding files (name -> content).
func regTarLayer(t *testing.T, files map[string][]byte, modes map[string]int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for name, data := range files {
		for d := filepath.Dir(name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}); err != nil {
				t.Fatal(err)
			}
		}
		mode := int64(0o644)
		if m, ok := modes[name]; ok {
			mode = m
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// regRandomBytes returns n bytes that do not compress, different per seed.
func regRandomBytes(seed uint64, n int) []byte {
	r := mrand.New(mrand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// regPutImage writes a single-platform image whose layers are the given tars
// (gzip-compressed by the layout library) and names it ref.
func regPutImage(t *testing.T, dir, ref string, p ocispec.Platform, cmd []string, tars ...[]byte) ocispec.Descriptor {
	t.Helper()
	l, err := layout.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := layout.NewConfig(p)
	if cmd != nil {
		if err := cfg.SetRuntime("Cmd", cmd); err != nil {
			t.Fatal(err)
		}
	}
	var layers []ocispec.Descriptor
	for _, tb := range tars {
		ly, err := l.PutLayer(context.Background(), bytes.NewReader(tb))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.AppendLayer(ly.DiffID); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, ly.Descriptor)
	}
	md, err := l.PutImage(cfg, layers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ref != "" {
		if err := l.Tag(md, ref); err != nil {
			t.Fatal(err)
		}
	}
	return md
}

// regPutMultiImage writes an index of a linux/amd64 and a linux/arm64 image
// and names it ref. It returns the index and the two manifests.
func regPutMultiImage(t *testing.T, dir, ref string, seed uint64) (idx, amd, arm ocispec.Descriptor) {
	t.Helper()
	amd = regPutImage(t, dir, "", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/arch": []byte("amd64\n"), "data/a": regRandomBytes(seed, 64<<10)}, nil))
	arm = regPutImage(t, dir, "", ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil,
		regTarLayer(t, map[string][]byte{"etc/arch": []byte("arm64\n"), "data/a": regRandomBytes(seed+1, 64<<10)}, nil))
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{amd, arm},
	}
	idx, err = l.PutJSON(ocispec.MediaTypeImageIndex, index)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(idx, ref); err != nil {
		t.Fatal(err)
	}
	amd.Platform, arm.Platform = nil, nil
	return idx, amd, arm
}

// regResolve returns the digest a name has in a layout.
func regResolve(t *testing.T, dir, ref string) digest.Digest {
	t.Helper()
	l, err := layout.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d, err := l.Resolve(ref)
	if err != nil {
		t.Fatal(err)
	}
	return d.Digest
}

// regRawDigest asks skopeo for the digest of the manifest a registry serves.
func regRawDigest(t *testing.T, args ...string) digest.Digest {
	t.Helper()
	out := mustRun(t, "skopeo", append([]string{"inspect", "--raw"}, args...)...)
	return digest.FromBytes([]byte(out))
}

func regFirstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}

func regFsck(t *testing.T, dir string) {
	t.Helper()
	strata(t, "fsck", dir)
}

// TestRegistryPlainHTTP pushes and pulls single- and multi-platform images
// to a loopback registry that speaks plain HTTP (allowed without flags for
// loopback), with skopeo reading what strata pushed.
func TestRegistryPlainHTTP(t *testing.T) {
	reg := regStart(t, regConfig{})
	host := reg.listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	single := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/bin/true"},
		regTarLayer(t, map[string][]byte{"etc/hello": []byte("hello\n")}, nil),
		regTarLayer(t, map[string][]byte{"data/blob": regRandomBytes(1, 256<<10)}, nil))
	idx, amd, arm := regPutMultiImage(t, src, "multi", 10)

	// Single-platform image: push, skopeo reads it, pull it back.
	out := strata(t, "push", src+":v1", host+"/strata/single:v1")
	if want := host + "/strata/single:v1@" + single.Digest.String(); regFirstLine(out) != want {
		t.Fatalf("push printed %q, want %q", out, want)
	}
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/strata/single:v1"); d != single.Digest {
		t.Fatalf("registry serves %s, pushed %s", d, single.Digest)
	}
	var info struct{ Architecture, Os string }
	if err := json.Unmarshal([]byte(mustRun(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+host+"/strata/single:v1")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Architecture != "amd64" || info.Os != "linux" {
		t.Fatalf("skopeo inspect: %+v", info)
	}
	dst := filepath.Join(tmp, "dst")
	out = strata(t, "pull", "docker://"+host+"/strata/single:v1", dst+":got")
	if regFirstLine(out) != single.Digest.String() || regResolve(t, dst, "got") != single.Digest {
		t.Fatalf("pull printed %q, want %s", out, single.Digest)
	}
	regFsck(t, dst)

	// Nothing moves twice: a second push and pull find everything there.
	r := runCmd(t, nil, strataBin, "push", src+":v1", host+"/strata/single:v1")
	if r.Code != 0 || strings.Contains(r.Stderr, "pushed layer") || strings.Contains(r.Stderr, "pushed config") {
		t.Fatalf("second push moved blobs again (exit %d):\n%s", r.Code, r.Stderr)
	}
	r = runCmd(t, nil, strataBin, "pull", host+"/strata/single:v1", dst+":got")
	if r.Code != 0 || !strings.Contains(r.Stderr, "exists") || strings.Contains(r.Stderr, "pulled layer") {
		t.Fatalf("second pull moved blobs again (exit %d):\n%s", r.Code, r.Stderr)
	}

	// Without a name the image is named by its full reference.
	strata(t, "pull", host+"/strata/single:v1", dst)
	if regResolve(t, dst, host+"/strata/single:v1") != single.Digest {
		t.Fatal("pull without a name did not name the image by its reference")
	}

	// Multi-platform: whole, or one platform.
	strata(t, "push", src+":multi", host+"/strata/multi:v1")
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/strata/multi:v1"); d != idx.Digest {
		t.Fatalf("registry serves %s, pushed index %s", d, idx.Digest)
	}
	multi := filepath.Join(tmp, "multi")
	tests := []struct {
		name string
		args []string
		want digest.Digest
	}{
		{"all", []string{"--all-platforms"}, idx.Digest},
		{"arm64", []string{"--platform", "linux/arm64"}, arm.Digest},
		{"amd64", []string{"--platform", "linux/amd64"}, amd.Digest},
	}
	for _, tt := range tests {
		out := strata(t, append(append([]string{"pull"}, tt.args...), host+"/strata/multi:v1", multi+":"+tt.name)...)
		if regFirstLine(out) != tt.want.String() || regResolve(t, multi, tt.name) != tt.want {
			t.Fatalf("pull %v printed %q, want %s", tt.args, out, tt.want)
		}
	}
	regFsck(t, multi)
	// Several platforms: an index of just those.
	out = strata(t, "pull", "--platform", "linux/arm64,linux/amd64", host+"/strata/multi:v1", multi+":both")
	ml, err := layout.Open(multi)
	if err != nil {
		t.Fatal(err)
	}
	both, err := ml.Resolve("both")
	if err != nil || both.Digest.String() != regFirstLine(out) || !layout.IsIndex(both.MediaType) {
		t.Fatalf("pull of two platforms: %v %v, printed %q", both, err, out)
	}
	if ps, err := ml.Platforms(both); err != nil || len(ps) != 2 {
		t.Fatalf("pull of two platforms holds %v, %v", ps, err)
	}
	ml.Close()
	// A platform the image does not have is an error.
	if r := strataFail(t, "pull", "--platform", "linux/s390x", host+"/strata/multi:v1", multi+":none"); !strings.Contains(r.Stderr, "linux/s390x") {
		t.Fatalf("missing platform: %s", r.Stderr)
	}
	// Push one platform out of the index.
	out = strata(t, "push", "--platform", "linux/arm64", src+":multi", host+"/strata/arm:v1")
	if !strings.HasSuffix(regFirstLine(out), "@"+arm.Digest.String()) {
		t.Fatalf("push --platform printed %q, want the arm64 manifest %s", out, arm.Digest)
	}

	// Pull modes.
	none := filepath.Join(tmp, "none")
	if r := strataFail(t, "pull", "--pull", "never", host+"/strata/single:v1", none+":x"); r.Code != 1 {
		t.Fatalf("pull never into nothing: exit %d: %s", r.Code, r.Stderr)
	}
	strata(t, "init", none)
	if r := strataFail(t, "pull", "--pull", "never", host+"/strata/single:v1", none+":x"); !strings.Contains(r.Stderr, "not present") {
		t.Fatalf("pull never: %s", r.Stderr)
	}
	// Present images are not fetched again: a closed port is never asked.
	dl, err := layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.Tag(single, "local-only"); err != nil {
		t.Fatal(err)
	}
	dl.Close()
	closed := fmt.Sprintf("127.0.0.1:%d/strata/single:v1", regFreePort(t, "127.0.0.1"))
	strata(t, "pull", "--pull", "missing", closed, dst+":local-only")
	strata(t, "pull", "--pull", "never", closed, dst+":local-only")
	strataFail(t, "pull", "--pull", "always", closed, dst+":local-only")
	strata(t, "pull", "--pull", "missing", host+"/strata/single:v1", dst+":got")
	// A name pulled from another reference does not stand for this one.
	if r := strataFail(t, "pull", "--pull", "never", closed, dst+":got"); !strings.Contains(r.Stderr, "not present") {
		t.Fatalf("pull never with a name from another reference: %s", r.Stderr)
	}
	if r := strataFail(t, "pull", "--pull", "sometimes", closed, dst+":got"); r.Code != 2 {
		t.Fatalf("bad --pull value: exit %d", r.Code)
	}

	// Push by digest: no tag, the digest names it.
	out = strata(t, "push", "--by-digest", src+":v1", host+"/strata/bydigest")
	if want := host + "/strata/bydigest@" + single.Digest.String(); regFirstLine(out) != want {
		t.Fatalf("push --by-digest printed %q, want %q", out, want)
	}
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/strata/bydigest@"+single.Digest.String()); d != single.Digest {
		t.Fatalf("by-digest push serves %s", d)
	}
	strata(t, "push", src+":v1", host+"/strata/bydigest@"+single.Digest.String())
	if r := strataFail(t, "push", src+":v1", host+"/strata/bydigest@"+arm.Digest.String()); !strings.Contains(r.Stderr, "digest") {
		t.Fatalf("push to a foreign digest: %s", r.Stderr)
	}
	// Pull by digest.
	out = strata(t, "pull", host+"/strata/bydigest@"+single.Digest.String(), dst+":bydigest")
	if regFirstLine(out) != single.Digest.String() {
		t.Fatalf("pull by digest printed %q", out)
	}

	// Cross-repository mount: a pulled image remembers its repository, and
	// pushing it to another repository of the same registry mounts blobs.
	r = runCmd(t, nil, strataBin, "push", dst+":"+host+"/strata/single:v1", host+"/strata/copy:v1")
	if r.Code != 0 || !strings.Contains(r.Stderr, "mounted layer") {
		t.Fatalf("push to a sibling repository did not mount (exit %d):\n%s", r.Code, r.Stderr)
	}
	r = runCmd(t, nil, strataBin, "push", "--mount-from", "strata/multi", src+":multi", host+"/strata/multi2:v1")
	if r.Code != 0 || !strings.Contains(r.Stderr, "mounted layer") {
		t.Fatalf("push --mount-from did not mount (exit %d):\n%s", r.Code, r.Stderr)
	}
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/strata/multi2:v1"); d != idx.Digest {
		t.Fatalf("mounted push serves %s", d)
	}

	// A layout that holds part of a multi-platform image pushes that part.
	part := filepath.Join(tmp, "part")
	_, _, partArm := regPutMultiImage(t, part, "multi", 50)
	pl, err := layout.Open(part)
	if err != nil {
		t.Fatal(err)
	}
	armImg, err := pl.ReadImage(partArm)
	if err != nil {
		t.Fatal(err)
	}
	if err := pl.Blobs().Delete(armImg.Manifest.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
	pl.Close()
	if r := strataFail(t, "push", part+":multi", host+"/strata/part:v1"); !strings.Contains(r.Stderr, "--platform") {
		t.Fatalf("push of a partial index: %s", r.Stderr)
	}
	strata(t, "push", "--platform", "linux/amd64", part+":multi", host+"/strata/part:v1")

	// A pull that fails before anything arrives leaves no new layout.
	never := filepath.Join(tmp, "never-created")
	if r := strataFail(t, "pull", host+"/strata/no-such-image:v1", never); !strings.Contains(r.Stderr, "not found") {
		t.Fatalf("pull of a missing image: %s", r.Stderr)
	}
	if _, err := os.Stat(never); !os.IsNotExist(err) {
		t.Fatalf("a failed pull left %s: %v", never, err)
	}

	// Usage errors.
	if r := strataFail(t, "pull", "Not/A:Valid:Ref", dst); r.Code != 2 {
		t.Fatalf("bad reference: exit %d", r.Code)
	}
	if r := strataFail(t, "pull", "--platform", "linux/arm64", "--all-platforms", host+"/strata/multi:v1", dst); r.Code != 2 {
		t.Fatalf("--platform with --all-platforms: exit %d", r.Code)
	}
}

// TestRegistryTLSAuth talks to a registry with a self-signed CA and basic
// auth: login and logout, --cert-dir, SSL_CERT_FILE and --insecure.
func TestRegistryTLSAuth(t *testing.T) {
	reg := regStart(t, regConfig{tls: true, user: "alice", password: "s3cret-pw"})
	host := reg.listen
	tmp := t.TempDir()
	cfgDir := filepath.Join(tmp, "docker")
	env := []string{"DOCKER_CONFIG=" + cfgDir}
	src := filepath.Join(tmp, "src")
	single := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/tls": []byte("tls\n")}, nil))
	idx, _, _ := regPutMultiImage(t, src, "multi", 20)
	ref := host + "/secure/img:v1"

	// The self-signed certificate is refused without the CA.
	r := regStrataEnv(t, env, nil, "push", src+":v1", ref)
	if r.Code != 1 || !strings.Contains(r.Stderr, "certificate") || !strings.Contains(r.Stderr, "--cert-dir") {
		t.Fatalf("push without the CA: exit %d: %s", r.Code, r.Stderr)
	}
	// With the CA but no credentials the registry refuses.
	r = regStrataEnv(t, env, nil, "push", "--cert-dir", reg.certDir, src+":v1", ref)
	if r.Code != 1 || !strings.Contains(strings.ToLower(r.Stderr), "unauthorized") {
		t.Fatalf("push without credentials: exit %d: %s", r.Code, r.Stderr)
	}
	// login: a wrong password is refused and stores nothing.
	r = regStrataEnv(t, env, []byte("wrong\n"), "login", "--cert-dir", reg.certDir, "-u", "alice", "--password-stdin", host)
	if r.Code != 1 {
		t.Fatalf("login with a wrong password: exit %d: %s", r.Code, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(cfgDir, "config.json")); err == nil {
		b, _ := os.ReadFile(filepath.Join(cfgDir, "config.json"))
		if strings.Contains(string(b), host) {
			t.Fatalf("a refused login was stored: %s", b)
		}
	}
	// Without a terminal the password must come from stdin.
	if r := regStrataEnv(t, env, []byte{}, "login", "-u", "alice", host); r.Code != 2 {
		t.Fatalf("login without --password-stdin off a terminal: exit %d: %s", r.Code, r.Stderr)
	}
	r = regStrataEnv(t, env, []byte("s3cret-pw\n"), "--quiet", "login", "--cert-dir", reg.certDir, "-u", "alice", "--password-stdin", host)
	if r.Code != 0 {
		t.Fatalf("login: exit %d: %s", r.Code, r.Stderr)
	}
	b, err := os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if err != nil || !strings.Contains(string(b), host) {
		t.Fatalf("login stored no credentials: %s %v", b, err)
	}

	out := regMustStrataEnv(t, env, "--quiet", "push", "--cert-dir", reg.certDir, src+":v1", ref)
	if !strings.HasSuffix(regFirstLine(out), "@"+single.Digest.String()) {
		t.Fatalf("push printed %q", out)
	}
	regMustStrataEnv(t, env, "--quiet", "push", "--cert-dir", reg.certDir, src+":multi", host+"/secure/multi:v1")
	// skopeo reads it with the same CA and credentials.
	if d := regRawDigest(t, "--cert-dir", reg.certDir, "--authfile", filepath.Join(cfgDir, "config.json"), "docker://"+ref); d != single.Digest {
		t.Fatalf("skopeo sees %s, pushed %s", d, single.Digest)
	}

	tests := []struct {
		name  string
		env   []string
		flags []string
	}{
		{"cert-dir", nil, []string{"--cert-dir", reg.certDir}},
		{"ssl-cert-file", []string{"SSL_CERT_FILE=" + reg.caFile}, nil},
		{"insecure", nil, []string{"--insecure"}},
	}
	dst := filepath.Join(tmp, "dst")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := append(append([]string{}, env...), tt.env...)
			args := append(append([]string{"--quiet", "pull"}, tt.flags...), ref, dst+":"+tt.name)
			if out := regMustStrataEnv(t, e, args...); regFirstLine(out) != single.Digest.String() {
				t.Fatalf("pull printed %q, want %s", out, single.Digest)
			}
			args = append(append([]string{"--quiet", "pull", "--all-platforms"}, tt.flags...), host+"/secure/multi:v1", dst+":multi-"+tt.name)
			if out := regMustStrataEnv(t, e, args...); regFirstLine(out) != idx.Digest.String() {
				t.Fatalf("pull --all-platforms printed %q, want %s", out, idx.Digest)
			}
		})
	}
	regFsck(t, dst)

	// logout: the credentials go, and the registry refuses again.
	regMustStrataEnv(t, env, "--quiet", "logout", host)
	b, _ = os.ReadFile(filepath.Join(cfgDir, "config.json"))
	if strings.Contains(string(b), host) {
		t.Fatalf("logout left the credentials: %s", b)
	}
	r = regStrataEnv(t, env, nil, "pull", "--cert-dir", reg.certDir, ref, dst+":after-logout")
	if r.Code != 1 || !strings.Contains(strings.ToLower(r.Stderr), "unauthorized") {
		t.Fatalf("pull after logout: exit %d: %s", r.Code, r.Stderr)
	}
	r = regStrataEnv(t, env, nil, "logout", host)
	if r.Code != 0 || !strings.Contains(r.Stderr, "not logged in") {
		t.Fatalf("second logout: exit %d: %s", r.Code, r.Stderr)
	}

	// Credentials that skopeo (or podman) login stored are read too.
	authFile := filepath.Join(tmp, "containers-auth.json")
	needTool(t, "skopeo")
	if r := runCmd(t, []byte("s3cret-pw\n"), "skopeo", "login", "--cert-dir", reg.certDir, "--authfile", authFile, "-u", "alice", "--password-stdin", host); r.Code != 0 {
		t.Fatalf("skopeo login: exit %d: %s", r.Code, r.Stderr)
	}
	e := append(append([]string{}, env...), "REGISTRY_AUTH_FILE="+authFile)
	if out := regMustStrataEnv(t, e, "--quiet", "pull", "--cert-dir", reg.certDir, ref, dst+":podman-auth"); regFirstLine(out) != single.Digest.String() {
		t.Fatalf("pull with skopeo's credentials printed %q", out)
	}
}

// regNetns makes a network namespace joined to this one by a veth pair
// and returns its name and its address on the pair. A registry there is
// reached through an address that is not loopback, the way a registry on
// another machine is, while no packet leaves this machine. Everything it
// makes goes when the test ends, whether it passed or not.
func regNetns(t *testing.T) (ns, ip string) {
	t.Helper()
	needRoot(t)
	needTool(t, "ip")
	// Names and the subnet derive from the pid, so that test processes
	// running side by side (several checkouts, go test -count) never share
	// a namespace, an interface or a route. Interface names stay within
	// the kernel's 15 bytes.
	pid := os.Getpid()
	ns = fmt.Sprintf("strata-reg-%d", pid)
	hostIf, nsIf := fmt.Sprintf("sreg%dh", pid), fmt.Sprintf("sreg%dn", pid)
	// One /30 out of 198.18.0.0/15 (reserved for network tests, RFC 2544),
	// which holds 32768 of them.
	n := uint32(pid%(1<<15)) * 4
	addr := func(host uint32) string {
		v := (uint32(198)<<24 | uint32(18)<<16) + n + host
		return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
	}
	hostIP := addr(1)
	ip = addr(2)
	remove := func() {
		// Deleting the namespace deletes its end of the pair, and with it
		// the other end; the second delete covers a namespace that was
		// never made.
		_ = exec.Command("ip", "netns", "delete", ns).Run()
		_ = exec.Command("ip", "link", "delete", hostIf).Run()
	}
	// Leftovers of a killed run that had the same pid.
	remove()
	t.Cleanup(remove)
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", hostIf, "type", "veth", "peer", "name", nsIf, "netns", ns},
		{"addr", "add", hostIP + "/30", "dev", hostIf},
		{"link", "set", hostIf, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", ip + "/30", "dev", nsIf},
		{"-n", ns, "link", "set", nsIf, "up"},
	} {
		mustRun(t, "ip", args...)
	}
	return ns, ip
}

// TestRegistryPlainHTTPHint checks that plain HTTP to a registry that is
// not on loopback needs --plain-http or --insecure, and that the error says
// so. The registry runs in a network namespace of the test's own.
func TestRegistryPlainHTTPHint(t *testing.T) {
	ns, ip := regNetns(t)
	reg := regStart(t, regConfig{ip: ip, netns: ns})
	host := reg.listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	single := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/plain": []byte("plain\n")}, nil))
	ref := host + "/plain/img:v1"

	for _, args := range [][]string{
		{"push", src + ":v1", ref},
		{"pull", ref, filepath.Join(tmp, "dst")},
		{"copy", "oci:" + src + ":v1", "docker://" + host + "/plain/copy:v1"},
	} {
		r := strataFail(t, args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, "--plain-http") || !strings.Contains(r.Stderr, "--insecure") {
			t.Fatalf("strata %v: exit %d, no hint: %s", args, r.Code, r.Stderr)
		}
	}
	strata(t, "push", "--plain-http", src+":v1", ref)
	r := runCmd(t, nil, strataBin, "pull", "--insecure", ref, filepath.Join(tmp, "dst")+":v1")
	if r.Code != 0 || regFirstLine(r.Stdout) != single.Digest.String() || !strings.Contains(r.Stderr, "plain HTTP") {
		t.Fatalf("pull --insecure: exit %d\nstdout %s\nstderr %s", r.Code, r.Stdout, r.Stderr)
	}
	// copy takes the same flags.
	strata(t, "copy", "--plain-http", "oci:"+src+":v1", "docker://"+host+"/plain/copy:v1")
	strata(t, "copy", "--insecure", "docker://"+host+"/plain/copy:v1", "oci:"+filepath.Join(tmp, "dst")+":copied")
	if got := regResolve(t, filepath.Join(tmp, "dst"), "copied"); got != single.Digest {
		t.Fatalf("copy --insecure from the registry: %s, want %s", got, single.Digest)
	}
	regFsck(t, filepath.Join(tmp, "dst"))
}

// TestRegistrySkopeoPushes pulls what skopeo pushed.
func TestRegistrySkopeoPushes(t *testing.T) {
	reg := regStart(t, regConfig{})
	host := reg.listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/skopeo": []byte("skopeo\n")}, nil))
	regPutMultiImage(t, src, "multi", 30)

	mustRun(t, "skopeo", "copy", "--dest-tls-verify=false", "oci:"+src+":v1", "docker://"+host+"/skopeo/single:v1")
	mustRun(t, "skopeo", "copy", "--all", "--dest-tls-verify=false", "oci:"+src+":multi", "docker://"+host+"/skopeo/multi:v1")
	single := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/skopeo/single:v1")
	multi := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/skopeo/multi:v1")

	dst := filepath.Join(tmp, "dst")
	if out := strata(t, "pull", host+"/skopeo/single:v1", dst+":single"); regFirstLine(out) != single.String() {
		t.Fatalf("pull printed %q, skopeo pushed %s", out, single)
	}
	if out := strata(t, "pull", "--all-platforms", host+"/skopeo/multi:v1", dst+":multi"); regFirstLine(out) != multi.String() {
		t.Fatalf("pull printed %q, skopeo pushed %s", out, multi)
	}
	// Docker schema2 media types survive a round trip byte for byte.
	mustRun(t, "skopeo", "copy", "--format", "v2s2", "--dest-tls-verify=false", "oci:"+src+":v1", "docker://"+host+"/skopeo/v2s2:v1")
	v2s2 := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/skopeo/v2s2:v1")
	if out := strata(t, "pull", host+"/skopeo/v2s2:v1", dst+":v2s2"); regFirstLine(out) != v2s2.String() {
		t.Fatalf("pull of a schema2 image printed %q, skopeo pushed %s", out, v2s2)
	}
	strata(t, "push", dst+":v2s2", host+"/skopeo/v2s2-back:v1")
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/skopeo/v2s2-back:v1"); d != v2s2 {
		t.Fatalf("schema2 image pushed back as %s, was %s", d, v2s2)
	}
	regFsck(t, dst)
	// And skopeo reads the pulled layout back.
	mustRun(t, "skopeo", "inspect", "oci:"+dst+":single")
}

// TestRegistryPulledImageRuns pulls an image and runs it with runc after
// strata unpack.
func TestRegistryPulledImageRuns(t *testing.T) {
	needRoot(t)
	needTool(t, "runc")
	testenv.RequireFile(t, "/bin/busybox", "busybox-static")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	reg := regStart(t, regConfig{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/bin/busybox", "cat", "/etc/greeting"},
		regTarLayer(t, map[string][]byte{"bin/busybox": bb}, map[string]int64{"bin/busybox": 0o755}),
		regTarLayer(t, map[string][]byte{"etc/greeting": []byte("pulled and running\n")}, nil))
	ref := reg.listen + "/run/img:v1"
	strata(t, "push", src+":v1", ref)
	dst := filepath.Join(tmp, "dst")
	strata(t, "pull", ref, dst+":v1")
	regFsck(t, dst)

	bundle := filepath.Join(tmp, "bundle")
	strata(t, "unpack", dst+":v1", bundle)
	cfgPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	// This machine refuses setrlimit: drop rlimits and the terminal.
	if p, ok := spec["process"].(map[string]any); ok {
		delete(p, "rlimits")
		p["terminal"] = false
	}
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("strata-registry-%d", os.Getpid())
	root := filepath.Join(tmp, "runc")
	t.Cleanup(func() { _ = exec.Command("runc", "--root", root, "delete", "--force", id).Run() })
	out := mustRun(t, "runc", "--root", root, "run", "--bundle", bundle, id)
	if strings.TrimSpace(out) != "pulled and running" {
		t.Fatalf("the pulled image printed %q", out)
	}

	// podman loads it after strata save (podman cannot run here: this
	// machine refuses setrlimit).
	archive := filepath.Join(tmp, "img.tar")
	strata(t, "save", dst+":v1", "-o", archive)
	// podman wants a short runroot: not under the test's long temp dir.
	store, err := os.MkdirTemp("", "strata-pm-")
	if err != nil {
		t.Fatal(err)
	}
	podman := []string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"), "--storage-driver", "vfs"}
	t.Cleanup(func() {
		_ = exec.Command("podman", append(podman, "system", "reset", "--force")...).Run()
		_ = os.RemoveAll(store)
	})
	mustRun(t, "podman", append(podman, "load", "-i", archive)...)
	// Pulled as dst:v1, a bare tag: the archive names the image by the
	// reference it was pulled from.
	cmdJSON := mustRun(t, "podman", append(podman, "image", "inspect", "--format", "{{json .Config.Cmd}}", ref)...)
	if !strings.Contains(cmdJSON, "/etc/greeting") {
		t.Fatalf("podman loaded a config with Cmd %s", cmdJSON)
	}

	// And a real Docker engine loads the saved archive and runs it.
	e := startDockerd(t)
	e.must(t, "load", "-i", archive)
	imgID := strings.TrimSpace(e.must(t, "images", "-q", "--no-trunc"))
	if strings.Count(imgID, "\n") != 0 || !strings.HasPrefix(imgID, "sha256:") {
		t.Fatalf("docker holds images %q after one load", imgID)
	}
	if got := e.must(t, "run", "--rm", "--network=none", imgID); strings.TrimSpace(got) != "pulled and running" {
		t.Fatalf("docker run of the pulled image printed %q", got)
	}
}

// regKillProxy forwards TCP connections to a registry and, once a number of
// bytes has passed in one direction, kills the registry and cuts every
// connection: a registry crash at a known point of a transfer.
type regKillProxy struct {
	ln       net.Listener
	target   string
	upload   bool // count client->registry bytes (push), else registry->client
	limit    atomic.Int64
	total    atomic.Int64
	onTrip   func()
	tripOnce sync.Once
	mu       sync.Mutex
	conns    map[net.Conn]bool
}

func regStartKillProxy(t *testing.T, target string, upload bool) *regKillProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &regKillProxy{ln: ln, target: target, upload: upload, conns: map[net.Conn]bool{}}
	p.limit.Store(-1)
	go p.serve()
	t.Cleanup(func() { ln.Close(); p.cutAll() })
	return p
}

func (p *regKillProxy) addr() string { return p.ln.Addr().String() }

// arm makes the proxy trip after n more counted bytes.
func (p *regKillProxy) arm(n int64, onTrip func()) {
	p.tripOnce = sync.Once{}
	p.onTrip = onTrip
	p.total.Store(0)
	p.limit.Store(n)
}

// count resets the counter and disarms the proxy.
func (p *regKillProxy) count() {
	p.limit.Store(-1)
	p.total.Store(0)
}

func (p *regKillProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *regKillProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *regKillProxy) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

func (p *regKillProxy) handle(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.track(c, true)
	p.track(up, true)
	defer func() {
		p.track(c, false)
		p.track(up, false)
		c.Close()
		up.Close()
	}()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, counted bool) {
		defer func() { done <- struct{}{} }()
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if counted {
					tot := p.total.Add(int64(n))
					if lim := p.limit.Load(); lim >= 0 && tot >= lim {
						p.tripOnce.Do(func() {
							p.onTrip()
							p.cutAll()
						})
						return
					}
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				return
			}
		}
	}
	go pipe(up, c, p.upload)
	go pipe(c, up, !p.upload)
	<-done
	<-done
}

// TestRegistryKilledMidTransfer kills the registry in the middle of a push
// and of a pull: nothing is left corrupt, the next run completes, and the
// resumed pull does not fetch again the blobs the first one verified.
func TestRegistryKilledMidTransfer(t *testing.T) {
	reg := regStart(t, regConfig{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	const layerSize = 4 << 20
	var tars [][]byte
	for i := 0; i < 3; i++ {
		tars = append(tars, regTarLayer(t, map[string][]byte{fmt.Sprintf("data/%d", i): regRandomBytes(uint64(100+i), layerSize)}, nil))
	}
	img := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, tars...)

	// Push, killed after 6 MiB have gone up.
	up := regStartKillProxy(t, reg.listen, true)
	ref := up.addr() + "/crash/img:v1"
	up.arm(6<<20, reg.kill)
	r := strataFail(t, "push", src+":v1", ref)
	if r.Code != 1 {
		t.Fatalf("interrupted push: exit %d: %s", r.Code, r.Stderr)
	}
	t.Logf("interrupted push: %s", r.Stderr)
	regFsck(t, src)
	reg.start()
	up.count()
	out := strata(t, "push", src+":v1", ref)
	if !strings.HasSuffix(regFirstLine(out), "@"+img.Digest.String()) {
		t.Fatalf("push after the crash printed %q", out)
	}
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+ref); d != img.Digest {
		t.Fatalf("registry serves %s after the resumed push, want %s", d, img.Digest)
	}

	// Pull, one blob at a time, killed after 6 MiB have come down: the
	// first layer is in, the second half-way.
	down := regStartKillProxy(t, reg.listen, false)
	ref = down.addr() + "/crash/img:v1"
	dst := filepath.Join(tmp, "dst")
	down.arm(6<<20, reg.kill)
	r = strataFail(t, "pull", "--jobs", "1", ref, dst+":v1")
	if r.Code != 1 {
		t.Fatalf("interrupted pull: exit %d: %s", r.Code, r.Stderr)
	}
	t.Logf("interrupted pull: %s", r.Stderr)
	regFsck(t, dst)
	l, err := layout.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Resolve("v1"); err == nil {
		t.Fatal("an interrupted pull named the image")
	}
	l.Close()
	if ents, _ := os.ReadDir(filepath.Join(dst, ".strata", "partial", "sha256")); len(ents) != 1 {
		t.Fatalf("the interrupted pull kept %d partial downloads, want the one in flight", len(ents))
	}
	reg.start()
	down.count()
	out = strata(t, "pull", "--jobs", "1", ref, dst+":v1")
	if regFirstLine(out) != img.Digest.String() {
		t.Fatalf("resumed pull printed %q, want %s", out, img.Digest)
	}
	regFsck(t, dst)
	// The resumed pull fetched neither the finished first layer nor the
	// part of the second that had arrived.
	t.Logf("the resumed pull downloaded %d bytes of %d", down.total.Load(), 3*layerSize)
	if got := down.total.Load(); got > 2*layerSize-layerSize/4 {
		t.Fatalf("the resumed pull downloaded %d bytes: verified bytes were fetched again", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(dst, ".strata", "partial", "sha256")); len(ents) != 0 {
		t.Fatalf("partial downloads left after a finished pull: %v", ents)
	}
}

// TestRegistryCopyTransport copies through docker:// with strata copy:
// layout to registry, registry to layout, registry to registry.
func TestRegistryCopyTransport(t *testing.T) {
	reg := regStart(t, regConfig{})
	host := reg.listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	single := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/copy": []byte("copy\n")}, nil))
	idx, _, arm := regPutMultiImage(t, src, "multi", 40)

	strata(t, "copy", "oci:"+src+":v1", "docker://"+host+"/copy/img:v1")
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/copy/img:v1"); d != single.Digest {
		t.Fatalf("copy to docker:// serves %s, want %s", d, single.Digest)
	}
	strata(t, "copy", "--all-platforms", src+":multi", "docker://"+host+"/copy/multi:v1")
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/copy/multi:v1"); d != idx.Digest {
		t.Fatalf("copy --all-platforms to docker:// serves %s, want %s", d, idx.Digest)
	}

	dst := filepath.Join(tmp, "dst")
	strata(t, "copy", "docker://"+host+"/copy/img:v1", "oci:"+dst+":single")
	strata(t, "copy", "--platform", "linux/arm64", "docker://"+host+"/copy/multi:v1", dst+":arm")
	strata(t, "copy", "--all-platforms", "docker://"+host+"/copy/multi:v1", dst+":multi")
	for name, want := range map[string]digest.Digest{"single": single.Digest, "arm": arm.Digest, "multi": idx.Digest} {
		if got := regResolve(t, dst, name); got != want {
			t.Fatalf("%s: copied %s, want %s", name, got, want)
		}
	}
	// Without a destination name the registry name is kept.
	strata(t, "copy", "docker://"+host+"/copy/img:v1", "oci:"+dst)
	if regResolve(t, dst, host+"/copy/img:v1") != single.Digest {
		t.Fatal("copy from docker:// did not keep the reference as the name")
	}
	regFsck(t, dst)

	strata(t, "copy", "--all-platforms", "docker://"+host+"/copy/multi:v1", "docker://"+host+"/copy/again:v2")
	if d := regRawDigest(t, "--tls-verify=false", "docker://"+host+"/copy/again:v2"); d != idx.Digest {
		t.Fatalf("registry-to-registry copy serves %s, want %s", d, idx.Digest)
	}
	if r := strataFail(t, "copy", "docker:"+host+"/copy/img:v1", dst); r.Code != 2 {
		t.Fatalf("docker: without //: exit %d: %s", r.Code, r.Stderr)
	}

	// A registry with its own CA and a password: copy takes --cert-dir and
	// --authfile as pull and push do.
	sec := regStart(t, regConfig{tls: true, user: "bob", password: "copy-pw"})
	env := []string{"DOCKER_CONFIG=" + filepath.Join(tmp, "no-docker-config")}
	authFile := filepath.Join(tmp, "auth.json")
	secRef := "docker://" + sec.listen + "/copy/secure:v1"
	r := regStrataEnv(t, env, nil, "copy", "oci:"+src+":v1", secRef)
	if r.Code != 1 || !strings.Contains(r.Stderr, "certificate") || !strings.Contains(r.Stderr, "--cert-dir") {
		t.Fatalf("copy to a registry without its CA: exit %d: %s", r.Code, r.Stderr)
	}
	r = regStrataEnv(t, env, nil, "copy", "--cert-dir", sec.certDir, "oci:"+src+":v1", secRef)
	if r.Code != 1 || !strings.Contains(strings.ToLower(r.Stderr), "unauthorized") {
		t.Fatalf("copy without credentials: exit %d: %s", r.Code, r.Stderr)
	}
	if r := regStrataEnv(t, env, []byte("copy-pw\n"), "--quiet", "login", "--cert-dir", sec.certDir, "--authfile", authFile, "-u", "bob", "--password-stdin", sec.listen); r.Code != 0 {
		t.Fatalf("login --authfile: exit %d: %s", r.Code, r.Stderr)
	}
	regMustStrataEnv(t, env, "--quiet", "copy", "--cert-dir", sec.certDir, "--authfile", authFile, "oci:"+src+":v1", secRef)
	if d := regRawDigest(t, "--cert-dir", sec.certDir, "--authfile", authFile, secRef); d != single.Digest {
		t.Fatalf("copy to the TLS registry serves %s, want %s", d, single.Digest)
	}
	regMustStrataEnv(t, env, "--quiet", "copy", "--cert-dir", sec.certDir, "--authfile", authFile, secRef, "oci:"+dst+":secure")
	// --insecure stands in for the CA; the password still comes from --authfile.
	regMustStrataEnv(t, env, "--quiet", "copy", "--insecure", "--authfile", authFile, "--all-platforms", "docker://"+host+"/copy/multi:v1", "docker://"+sec.listen+"/copy/multi:v1")
	regMustStrataEnv(t, env, "--quiet", "copy", "--insecure", "--authfile", authFile, "--platform", "linux/arm64", "docker://"+sec.listen+"/copy/multi:v1", "oci:"+dst+":secure-arm")
	for name, want := range map[string]digest.Digest{"secure": single.Digest, "secure-arm": arm.Digest} {
		if got := regResolve(t, dst, name); got != want {
			t.Fatalf("%s: copied %s from the TLS registry, want %s", name, got, want)
		}
	}
	regFsck(t, dst)
}

// TestRegistryDuplicatePlatform pulls from an index that lists two
// manifests for linux/amd64: the first is taken, as docker and containerd
// take it, and pull and copy say so on stderr, naming the other and how to
// pull it (by its digest, which then pulls without a word).
func TestRegistryDuplicatePlatform(t *testing.T) {
	reg := regStart(t, regConfig{})
	host := reg.listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	amd := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	first := regPutImage(t, src, "", amd, nil, regTarLayer(t, map[string][]byte{"etc/which": []byte("first\n")}, nil))
	second := regPutImage(t, src, "", amd, nil, regTarLayer(t, map[string][]byte{"etc/which": []byte("second\n")}, nil))
	arm := regPutImage(t, src, "", ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil,
		regTarLayer(t, map[string][]byte{"etc/which": []byte("arm\n")}, nil))
	l, err := layout.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	var ms []ocispec.Descriptor
	for _, m := range []struct {
		d ocispec.Descriptor
		p ocispec.Platform
	}{{first, amd}, {arm, ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}, {second, amd}} {
		d := m.d
		p := m.p
		d.Platform = &p
		ms = append(ms, d)
	}
	idx, err := l.PutJSON(ocispec.MediaTypeImageIndex, ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ms})
	if err == nil {
		err = l.Tag(idx, "dup")
	}
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	strata(t, "push", src+":dup", host+"/dup/img:v1")

	dst := filepath.Join(tmp, "dst")
	r := runCmd(t, nil, strataBin, "--quiet", "pull", "--platform", "linux/amd64", host+"/dup/img:v1", dst+":amd")
	if r.Code != 0 {
		t.Fatalf("pull: exit %d: %s", r.Code, r.Stderr)
	}
	if got := strings.TrimSpace(r.Stdout); got != first.Digest.String() {
		t.Fatalf("pulled %s, want the first amd64 manifest %s", got, first.Digest)
	}
	for _, want := range []string{"warning", "2 manifests for linux/amd64", "took the first, " + first.Digest.String(),
		"passed over " + second.Digest.String(), host + "/dup/img@" + second.Digest.String()} {
		if !strings.Contains(r.Stderr, want) {
			t.Fatalf("pull's stderr lacks %q:\n%s", want, r.Stderr)
		}
	}
	// The other one, by its digest: no warning.
	r = runCmd(t, nil, strataBin, "--quiet", "pull", host+"/dup/img@"+second.Digest.String(), dst+":second")
	if r.Code != 0 || strings.Contains(r.Stderr, "warning") || strings.TrimSpace(r.Stdout) != second.Digest.String() {
		t.Fatalf("pull by digest: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	// arm64 has one manifest: no warning.
	r = runCmd(t, nil, strataBin, "--quiet", "pull", "--platform", "linux/arm64", host+"/dup/img:v1", dst+":arm")
	if r.Code != 0 || strings.Contains(r.Stderr, "warning") {
		t.Fatalf("pull arm64: exit %d: %s", r.Code, r.Stderr)
	}
	// copy says the same.
	r = runCmd(t, nil, strataBin, "--quiet", "copy", "--platform", "linux/amd64", "docker://"+host+"/dup/img:v1", "oci:"+dst+":copied")
	if r.Code != 0 || !strings.Contains(r.Stderr, "passed over "+second.Digest.String()) || !strings.Contains(r.Stderr, "docker://"+host+"/dup/img@"+second.Digest.String()) {
		t.Fatalf("copy: exit %d: %s", r.Code, r.Stderr)
	}
	if got := regResolve(t, dst, "copied"); got != first.Digest {
		t.Fatalf("copy took %s, want %s", got, first.Digest)
	}
	regFsck(t, dst)
}
