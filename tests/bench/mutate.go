package main

import (
	"archive/tar"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// The image surgery workloads: a config change of the minbase image
// (issue 23: under 50 ms) and a 10 MB layer appended to it (faster than
// crane append against a local registry).

const benchLabel = "org.example.bench"

func (c strataCLI) mutate(ref string) []string {
	return c.argv("mutate", ref, "--label", benchLabel+"=1", "--env", "BENCH=1", "--cmd", `["/bin/true"]`)
}

func (c strataCLI) appendTar(k compression.Kind, ref, tarball, newRef string) []string {
	return c.argv("append", "--compression", string(k), ref, tarball, newRef)
}

func mutateWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	wl := &workload{Name: "mutate", Kind: k, Needs: []string{"mutate --label --env --cmd"}}
	setup := func(w *work) error { return copyLayout(ds.Layouts[k], filepath.Join(w.Dir, "l")) }
	check := func(w *work) error { return checkMutated(filepath.Join(w.Dir, "l"), "base") }
	strata := side{
		Label: "strata mutate",
		Role:  roleStrata,
		Setup: setup,
		Argv:  func(w *work) []string { return e.Strata.mutate(filepath.Join(w.Dir, "l") + ":base") },
		Check: check,
	}
	umoci := side{
		Label:       "umoci config",
		Role:        rolePeer,
		Tools:       []string{"umoci"},
		Unavailable: umociNoZstd(k),
		Setup:       setup,
		Argv: func(w *work) []string {
			return []string{"umoci", "config", "--image", filepath.Join(w.Dir, "l") + ":base", "--config.label", benchLabel + "=1", "--config.env", "BENCH=1", "--config.cmd", "/bin/true"}
		},
		Check: check,
	}
	// What any strata command costs before it does anything: on a loaded
	// machine the start of the process is most of a mutate.
	start := side{Label: "strata version (process start)", Role: roleLimit, Argv: func(*work) []string { return []string{e.Strata.Bin, "version"} }}
	wl.Sides = []side{strata, umoci, start}
	wl.Targets = []target{{Strata: strata.Label, Within: 50 * time.Millisecond}}
	return wl
}

// checkMutated checks that ref carries the label mutate sets and its one
// layer.
func checkMutated(dir, ref string) error {
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	defer l.Close()
	img, err := l.Image(ref, nil)
	if err != nil {
		return err
	}
	if img.Config.Config.Labels[benchLabel] != "1" {
		return fmt.Errorf("image %s:%s has no label %s", dir, ref, benchLabel)
	}
	return checkLayers(dir, ref, 1)
}

// appendWorkload appends a 10 MB tarball to the minbase image: strata in
// a layout, crane against a local registry (docker-registry) holding the
// same image, umoci in a layout.
func appendWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	wl := &workload{Name: "append-10MB", Kind: k, Needs: []string{"append --compression"}}
	tarball := func(w *work) string { return filepath.Join(filepath.Dir(w.Cache), "append-10MB.tar") }
	setup := func(w *work) error {
		if err := appendTarball(tarball(w)); err != nil {
			return err
		}
		return copyLayout(ds.Layouts[k], filepath.Join(w.Dir, "l"))
	}
	strata := side{
		Label: "strata append",
		Role:  roleStrata,
		Setup: setup,
		Argv: func(w *work) []string {
			l := filepath.Join(w.Dir, "l")
			return e.Strata.appendTar(k, l+":base", tarball(w), l+":new")
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "new", 2) },
	}
	crane, craneWhy := craneBin()
	reg := side{
		Label:       "crane append (local registry)",
		Role:        rolePeer,
		Unavailable: craneWhy,
		Setup: func(w *work) error {
			if err := appendTarball(tarball(w)); err != nil {
				return err
			}
			_, err := benchRegistry(e, w, ds.Layouts[k], k)
			return err
		},
		Argv: func(w *work) []string {
			host, _ := benchRegistry(e, w, ds.Layouts[k], k)
			return []string{crane, "--insecure", "append", "-b", host + "/bench/base:" + string(k), "-f", tarball(w), "-t", fmt.Sprintf("%s/bench/app:%s-%d", host, k, w.Run)}
		},
	}
	umoci := side{
		Label:       "umoci raw add-layer",
		Role:        rolePeer,
		Tools:       []string{"umoci"},
		Unavailable: umociNoZstd(k),
		Setup:       setup,
		Argv: func(w *work) []string {
			return []string{"umoci", "raw", "add-layer", "--image", filepath.Join(w.Dir, "l") + ":base", "--tag", "new", tarball(w)}
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "new", 2) },
	}
	if k != compression.Gzip {
		reg.Unavailable = "n/a (crane append writes only gzip layers)"
	}
	wl.Sides = []side{strata, reg, umoci}
	wl.Targets = []target{{Strata: strata.Label, Peer: reg.Label, MinRatio: 1}}
	return wl
}

// appendTarball writes, once, a 10 MB tar of 40 files of 256 KiB: half
// of them random, half text-like, so compression has work of both kinds.
func appendTarball(p string) error {
	if fi, err := os.Stat(p); err == nil && fi.Size() > 10<<20 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	rng := rand.New(rand.NewPCG(23, 23))
	buf := make([]byte, 256<<10)
	words := strings.Fields("layer image config manifest index blob digest platform rebase append mutate strata")
	for i := 0; i < 40; i++ {
		if i%2 == 0 {
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
		} else {
			var b strings.Builder
			for b.Len() < len(buf) {
				b.WriteString(words[rng.IntN(len(words))])
				b.WriteByte(" \n"[rng.IntN(2)])
			}
			copy(buf, b.String())
		}
		h := &tar.Header{Name: fmt.Sprintf("opt/append/f%02d", i), Mode: 0o644, Size: int64(len(buf)), Typeflag: tar.TypeReg, ModTime: time.Unix(1700000000, 0)}
		if err := tw.WriteHeader(h); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// craneBin finds crane where tests/setup.sh installs it, then on PATH;
// else it says why it is missing.
func craneBin() (string, string) {
	for _, p := range []string{filepath.Join(peerToolDir, "crane")} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, ""
		}
	}
	if p, err := exec.LookPath("crane"); err == nil {
		return p, ""
	}
	return "", "n/a (crane not installed: tests/setup.sh installs it)"
}

// The suite's registry: one docker-registry on loopback, started on first
// use, killed when this process exits (parent-death signal), with the
// minbase image of each compression pushed once.
var benchReg struct {
	mu     sync.Mutex
	host   string
	err    error
	pushed map[compression.Kind]bool
}

// Its storage is in the suite's scratch directory, removed with it.
func benchRegistry(e *env, w *work, src string, k compression.Kind) (string, error) {
	benchReg.mu.Lock()
	defer benchReg.mu.Unlock()
	if benchReg.host == "" && benchReg.err == nil {
		benchReg.host, benchReg.err = startRegistry(filepath.Join(filepath.Dir(filepath.Dir(w.Cache)), "registry"))
		benchReg.pushed = map[compression.Kind]bool{}
	}
	if benchReg.err != nil {
		return "", benchReg.err
	}
	if !benchReg.pushed[k] {
		if err := quietArgv(e.Strata.argv("push", src+":base", benchReg.host+"/bench/base:"+string(k))); err != nil {
			return "", err
		}
		benchReg.pushed[k] = true
	}
	return benchReg.host, nil
}

func startRegistry(dir string) (string, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", errors.New("docker-registry not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	host := ln.Addr().String()
	ln.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	conf := fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), host)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(conf), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go func() { _ = cmd.Wait() }()
	hc := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 200; i++ {
		if resp, err := hc.Get("http://" + host + "/v2/"); err == nil {
			resp.Body.Close()
			return host, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	return "", fmt.Errorf("docker-registry did not answer on %s", host)
}
