package blob

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Child processes: the test binary re-executed with STRATA_BLOB_CHILD set
// runs one of these instead of the tests.
func TestMain(m *testing.M) {
	switch os.Getenv("STRATA_BLOB_CHILD") {
	case "":
		os.Exit(m.Run())
	case "write":
		os.Exit(childWrite())
	default:
		fmt.Fprintln(os.Stderr, "unknown STRATA_BLOB_CHILD")
		os.Exit(3)
	}
}

// childBlob is blob i of the sequence the writer children write.
// Blob 8 is large (48 MiB), so that many kills land inside one long
// streamed write.
func childBlobSize(i int) int {
	if i == 8 {
		return 48 << 20
	}
	return (1<<20)*(1+i%6) + i
}

func childBlob(i int) []byte { return content(uint64(500+i), childBlobSize(i)) }

// childBlobStream produces childBlob(i) without holding it in memory.
func childBlobStream(i int) io.Reader {
	seed := uint64(500 + i)
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	return io.LimitReader(src, int64(childBlobSize(i)))
}

// childWrite writes blobs STRATA_FIRST..STRATA_LAST of the child sequence
// into the store at STRATA_DIR, printing "ready" first.
func childWrite() int {
	dir := os.Getenv("STRATA_DIR")
	first, _ := strconv.Atoi(os.Getenv("STRATA_FIRST"))
	last, _ := strconv.Atoi(os.Getenv("STRATA_LAST"))
	s := New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
	fmt.Println("ready")
	for i := first; i <= last; i++ {
		// Streamed as a layer would arrive; Commit checks the size and
		// the parent checks the digest.
		w, err := s.NewWriter(WithExpected("", int64(childBlobSize(i))))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, err := w.ReadFrom(childBlobStream(i)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, _, err := w.Commit(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func startWriter(t *testing.T, dir string, first, last int) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STRATA_BLOB_CHILD=write", "STRATA_DIR="+dir,
		"STRATA_FIRST="+strconv.Itoa(first), "STRATA_LAST="+strconv.Itoa(last))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	r := bufio.NewReader(out)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("child did not start: %q %v: %s", line, err, stderr.String())
	}
	return cmd, r
}

// Several processes writing the same blobs at once all succeed, and the
// store ends up with each blob once, intact.
func TestProcessesWriteSameBlobs(t *testing.T) {
	dir := t.TempDir()
	const procs, blobs = 3, 6
	var cmds []*exec.Cmd
	for range procs {
		cmd, _ := startWriter(t, dir, 0, blobs-1)
		cmds = append(cmds, cmd)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	s := New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
	for i := range blobs {
		b := childBlob(i)
		if err := s.Verify(context.Background(), digest.FromBytes(b), int64(len(b))); err != nil {
			t.Errorf("blob %d: %v", i, err)
		}
	}
	if got := stagingFiles(t, s); len(got) != 0 {
		t.Errorf("staging files left behind: %v", got)
	}
}

// A writer killed with SIGKILL at a random point leaves every visible blob
// complete and correct; what it leaves in staging is removed by
// CleanStaging and nothing else is.
func TestKilledWriterLeavesStoreClean(t *testing.T) {
	dir := t.TempDir()
	s := New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))
	known := map[digest.Digest]int64{}
	const seqLen = 12
	for i := range seqLen {
		b := childBlob(i)
		known[digest.FromBytes(b)] = int64(len(b))
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	iterations := 16
	if testing.Short() {
		iterations = 4
	}
	killedStaging := 0
	for it := range iterations {
		// Start each child at another point of the sequence so kills land
		// in writes and in commits of blobs not yet present.
		first := rng.IntN(seqLen)
		cmd, _ := startWriter(t, dir, first, seqLen-1)
		time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		err := s.Walk(func(d digest.Digest, size int64, err error) error {
			if err != nil {
				return fmt.Errorf("iteration %d: %w", it, err)
			}
			want, ok := known[d]
			if !ok {
				return fmt.Errorf("iteration %d: unexpected blob %s", it, d)
			}
			if size != want {
				return fmt.Errorf("iteration %d: blob %s has %d bytes, want %d", it, d, size, want)
			}
			return s.Verify(context.Background(), d, want)
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(stagingFiles(t, s)) > 0 {
			killedStaging++
		}
		if _, err := s.CleanStaging(); err != nil {
			t.Fatal(err)
		}
		if got := stagingFiles(t, s); len(got) != 0 {
			t.Fatalf("iteration %d: CleanStaging left %v", it, got)
		}
	}
	t.Logf("%d of %d kills left a staging file behind", killedStaging, iterations)
	// The store is still fully usable.
	var wg sync.WaitGroup
	for i := range seqLen {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := childBlob(i)
			if _, err := s.PutBytes(b); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}
