package main

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/imagefs"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/layout/transport"
)

// The libraries name conditions; the CLI adds what to type. Each error is
// wrapped as the libraries wrap it.
func TestHintFor(t *testing.T) {
	cert := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"needs credentials", fmt.Errorf("pull x: %w", &remote.UnauthorizedError{Registry: "r.example", Err: errors.New("401")}), " (run strata login r.example)"},
		{"refused credentials", fmt.Errorf("login to r.example: %w", &remote.UnauthorizedError{Registry: "r.example", Refused: true, Err: errors.New("401")}), " (see strata login r.example)"},
		{"plain http", fmt.Errorf("registry h does not answer HTTPS (x): %w", remote.ErrPlainHTTPRefused), "; if the network is trusted, use --plain-http (or --insecure) to talk plain HTTP to it"},
		{"untrusted certificate", fmt.Errorf("registry h: %w", cert), " (give its CA with --cert-dir DIR or SSL_CERT_FILE, or skip verification with --insecure)"},
		{"partial index", fmt.Errorf("push d:r: missing (%w)", remote.ErrPartialIndex), ": push what it holds with --platform"},
		{"zstd in docker", fmt.Errorf("convert: %w", layout.ErrZstdDocker), "; recompress with --compression gzip"},
		{"blobs kept", &transport.NotUndoneError{Err: errors.New("copy failed"), Dest: "oci:d", Undone: layout.Undone{Kept: 2, Busy: true}}, "; strata gc removes those no image uses"},
		{"index name taken", fmt.Errorf("d:app: %w", layout.ErrNameTaken), " (strata index add changes an index; strata rm frees the name)"},
		{"no base", fmt.Errorf("image x: %w: no old base given", mutate.ErrNoBase), " (give --old-base and --new-base)"},
		{"not based on", fmt.Errorf("image x: %w", &mutate.NotBasedOnError{Layer: 1}), " (is --old-base the image it was built on?)"},
		{"index annotation", fmt.Errorf("image x: %w", mutate.ErrNotIndex), " (index:KEY=VALUE annotations need an image index)"},
		{"in place", fmt.Errorf("oci-archive:-: %w", mutate.ErrInPlace), " (give NEWREF)"},
		{"registry source", fmt.Errorf("docker://x/y: %w", imagefs.ErrUnsupportedSource), " (strata pull it into a layout first)"},
		{"other", errors.New("other"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hintFor(tt.err); got != tt.want {
				t.Fatalf("hintFor(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// A zstd image refused by a Docker conversion or a docker-archive: the
// line the user sees names the condition, then the flag.
func TestHintPrinted(t *testing.T) {
	dir := t.TempDir()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	if err := tw.WriteHeader(&tar.Header{Name: "a", Mode: 0o644, Size: 2, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("hi"))
	tw.Close()
	tarball := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(tarball, tb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	lay := filepath.Join(dir, "l")
	mustStrata(t, "import", "--compression", "zstd", tarball, lay+":z")
	for _, args := range [][]string{
		{"copy", "--format", "docker", lay + ":z", lay + ":d"},
		{"save", lay + ":z", "-o", filepath.Join(dir, "z.tar")},
	} {
		_, stderr, code := strataRun(t, args...)
		if code != 1 || !strings.Contains(stderr, "zstd layers cannot be used in a Docker image") ||
			!strings.HasSuffix(stderr, "; recompress with --compression gzip\n") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("strata %s: exit %d, stderr %q", strings.Join(args, " "), code, stderr)
		}
	}
}

// No error message of the image libraries gives command-line advice (a
// flag, a strata command): that is hintFor's. zstd's own flag, naming how
// a stream was made, is not advice.
func TestLibraryErrorsGiveNoCLIAdvice(t *testing.T) {
	advice := regexp.MustCompile(`(^|[^\w-])--[a-z]|\bstrata (init|ls|inspect|tag|rm|gc|fsck|import|copy|save|load|pull|push|login|logout|unpack|mount|umount|commit|snapshots|unshare)\b`)
	for _, dir := range []string{"blob", "layout", "layout/archive", "layout/transport", "layout/remote", "layout/mutate",
		"internal/compression", "internal/chunkpipe", "internal/dockerfile", "internal/tempdir", "internal/safedir", "internal/ctxio"} {
		files, err := filepath.Glob(filepath.Join("..", "..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			fset := token.NewFileSet()
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || !(sel.Sel.Name == "Errorf" || sel.Sel.Name == "New" || sel.Sel.Name == "Sprintf") {
					return true
				}
				for _, a := range call.Args {
					lit, ok := a.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					s := strings.ReplaceAll(lit.Value, "zstd --long", "zstd long")
					if advice.MatchString(s) {
						t.Errorf("%s: %s gives CLI advice", fset.Position(lit.Pos()), lit.Value)
					}
				}
				return true
			})
		}
	}
}
