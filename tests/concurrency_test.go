package tests

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/layout"
	snapbundle "github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/layertest"
)

// blockedWriter is a strata command that reads its input from a pipe the
// test feeds: it has made its layout and waits for the rest.
type blockedWriter struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr bytes.Buffer
}

func startBlocked(t *testing.T, first []byte, args ...string) *blockedWriter {
	t.Helper()
	w := &blockedWriter{cmd: exec.Command(strataBin, append([]string{"--quiet"}, args...)...)}
	w.cmd.Stderr = &w.stderr
	var err error
	if w.in, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		}
	})
	if _, err := w.in.Write(first); err != nil {
		t.Fatal(err)
	}
	return w
}

// waitFor waits until p exists.
func waitFor(t *testing.T, p string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Lstat(p); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A command that fails in a layout it created, after another process
// completed an image there, takes back only its own work: the other
// image stays, and no message claims the layout is as it was.
func TestFailedWriterKeepsOthersWork(t *testing.T) {
	src := t.TempDir()
	makeImage(t, src, "theirs-src", "linux/amd64", layout.CompressionNone, "x:1")
	archive := []byte(strata(t, "save", "-o", "-", src+":x:1"))
	tarball := rootfsTar(t)
	other := compressFile(t, t.TempDir(), "", tarball)
	cases := []struct {
		name  string
		args  func(nl string) []string
		input []byte
	}{
		{"import", func(nl string) []string { return []string{"import", "-", nl + ":mine"} }, tarball},
		{"load", func(nl string) []string { return []string{"load", "-", nl} }, archive},
		{"copy", func(nl string) []string { return []string{"copy", "docker-archive:-", "oci:" + nl + ":mine"} }, archive},
	}
	for _, tc := range cases {
		for _, sig := range []syscall.Signal{0, syscall.SIGINT} {
			name := tc.name + "-fails"
			if sig != 0 {
				name = tc.name + "-interrupted"
			}
			t.Run(name, func(t *testing.T) {
				nl := filepath.Join(t.TempDir(), "nl")
				w := startBlocked(t, tc.input[:len(tc.input)/2], tc.args(nl)...)
				waitFor(t, filepath.Join(nl, "oci-layout"))
				// Another process completes an image in the new layout.
				strata(t, "import", other, nl+":theirs")
				if sig != 0 {
					if err := w.cmd.Process.Signal(sig); err != nil {
						t.Fatal(err)
					}
				} else {
					// The rest of the input is not what it should be.
					_, _ = w.in.Write(bytes.Repeat([]byte("garbage!"), 4096))
				}
				w.in.Close()
				if err := w.cmd.Wait(); err == nil {
					t.Fatalf("%s succeeded", tc.name)
				}
				msg := w.stderr.String()
				if strings.Contains(msg, "as it was") {
					t.Errorf("%s says the layout is as it was, after another image was added: %s", tc.name, msg)
				}
				if got := names(t, nl); strings.Join(got, " ") != "theirs" {
					t.Fatalf("names after the failure: %v (stderr %s)", got, msg)
				}
				resolve(t, nl, "theirs")
				fsckClean(t, nl)
				// Nothing of the failed command is left for gc.
				if out := strata(t, "gc", nl); !strings.HasPrefix(out, "removed 0 blob(s)") {
					t.Errorf("gc after the failure: %s", out)
				}
			})
		}
	}
}

// Failing and succeeding writers into one new layout, and into one new
// bundle directory, all at once: whatever one of them completed stays.
func TestConcurrentWritersLoseNothing(t *testing.T) {
	tarball := rootfsTar(t)
	good := compressFile(t, t.TempDir(), "", tarball)
	bad := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(bad, append(append([]byte{}, tarball[:len(tarball)/2]...), bytes.Repeat([]byte{1}, 9000)...), 0o644); err != nil {
		t.Fatal(err)
	}
	for round := range 4 {
		nl := filepath.Join(t.TempDir(), "nl")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var done []string
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration((i*29+round*13)%60) * time.Millisecond)
				file, ref := good, "ok"+string(rune('a'+i))
				if i%2 == 1 {
					file = bad
				}
				r := runCmd(t, nil, strataBin, "--quiet", "import", file, nl+":"+ref)
				if (r.Code == 0) != (file == good) {
					t.Errorf("import %s: exit %d: %s", file, r.Code, r.Stderr)
					return
				}
				if r.Code == 0 {
					mu.Lock()
					done = append(done, ref)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		for _, ref := range done {
			resolve(t, nl, ref)
		}
		fsckClean(t, nl)
	}

	// Unpacks into one new bundle directory, half of them of an image
	// whose second layer does not match its diffID.
	needRoot(t)
	img := standardImage(t)
	broken := filepath.Join(t.TempDir(), "broken")
	layers := layertest.Standard(nil)
	diffIDs := []digest.Digest{layertest.DiffID(layers[0]), layertest.DiffID(layers[0])}
	if err := layertest.BuildImage(broken, "v1", layertest.Image{Layers: layers[:2], DiffIDs: diffIDs}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "store")
	for round := range 4 {
		bundle := filepath.Join(t.TempDir(), "b")
		var wg sync.WaitGroup
		var mu sync.Mutex
		ok := 0
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration((i*17+round*7)%40) * time.Millisecond)
				ref := img + ":v1"
				if (i+round)%2 == 1 {
					ref = broken + ":v1"
				}
				r := runCmd(t, nil, strataBin, "--quiet", "unpack", "--root", store, ref, bundle)
				if r.Code == 0 {
					mu.Lock()
					ok++
					mu.Unlock()
					return
				}
				if !strings.Contains(r.Stderr, "another strata unpack is writing it") && !strings.Contains(r.Stderr, "directory is not empty") &&
					!strings.Contains(r.Stderr, "diffID") {
					t.Errorf("unpack %s: %s", ref, r.Stderr)
				}
			}()
		}
		wg.Wait()
		if ok > 1 {
			t.Fatalf("round %d: %d unpacks into one directory succeeded", round, ok)
		}
		if ok == 1 {
			if _, err := snapbundle.ReadRecord(bundle); err != nil {
				t.Fatalf("round %d: the bundle an unpack finished is gone: %v", round, err)
			}
			if _, err := os.Stat(filepath.Join(bundle, "rootfs", "etc")); err != nil {
				t.Fatalf("round %d: the finished bundle's rootfs: %v", round, err)
			}
		}
	}
}
