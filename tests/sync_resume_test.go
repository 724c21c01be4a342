package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestSyncResumes kills a sync once the first of two large layers is in
// the destination: the next run completes without fetching that layer
// again (its blob keeps its inode) and moves fewer bytes than a whole run.
func TestSyncResumes(t *testing.T) {
	reg := regStart(t, regConfig{})
	e := newSyncEnv(t)
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	const size = 16 << 20
	for i := range 2 {
		layer := regTarLayer(t, map[string][]byte{fmt.Sprintf("big/%d", i): regRandomBytes(uint64(500+i), size)}, nil)
		regPutImage(t, src, fmt.Sprintf("img%d", i), ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil, layer)
		e.must("push", fmt.Sprintf("%s:img%d", src, i), fmt.Sprintf("%s/resume/app:t%d", reg.listen, i))
	}
	args := []string{"-j", "1", "docker://" + reg.listen + "/resume/app"}
	whole := e.sync(append(args, filepath.Join(tmp, "whole"))...)

	dst := filepath.Join(tmp, "dst")
	cmd := exec.Command(strataBin, append([]string{"--quiet", "sync"}, append(args, dst)...)...)
	cmd.Env = append(os.Environ(), e.env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var first os.FileInfo
	deadline := time.Now().Add(2 * time.Minute)
	for first == nil {
		select {
		case err := <-done:
			t.Fatalf("sync ended (%v) before a layer was in %s: %s", err, dst, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("no layer in %s after 2 minutes", dst)
		}
		first = bigBlob(filepath.Join(dst, "blobs", "sha256"), size)
		time.Sleep(time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	before := first.Sys().(*syscall.Stat_t).Ino

	again := e.sync(append(args, dst)...)
	fsckClean(t, dst)
	if len(again.Images) != 2 {
		t.Fatalf("the next run: %+v", again)
	}
	if again.Bytes >= whole.Bytes {
		t.Errorf("the next run moved %d bytes, a whole run %d: nothing was resumed", again.Bytes, whole.Bytes)
	}
	after, err := os.Stat(filepath.Join(dst, "blobs", "sha256", first.Name()))
	if err != nil {
		t.Fatal(err)
	}
	if after.Sys().(*syscall.Stat_t).Ino != before {
		t.Errorf("layer %s was fetched again", first.Name())
	}
}

// bigBlob is a blob of dir of at least size/2 bytes, or nil.
func bigBlob(dir string, size int64) os.FileInfo {
	ents, _ := os.ReadDir(dir)
	for _, ent := range ents {
		if fi, err := ent.Info(); err == nil && fi.Size() >= size/2 {
			return fi
		}
	}
	return nil
}
