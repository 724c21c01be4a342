package layout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The test binary re-executed with STRATA_LAYOUT_CHILD set runs one of
// these child programs instead of the tests.
func TestMain(m *testing.M) {
	child := os.Getenv("STRATA_LAYOUT_CHILD")
	if child == "" {
		os.Exit(m.Run())
	}
	var err error
	switch child {
	case "tag":
		err = childTag()
	case "churn":
		err = childChurn()
	case "hold":
		err = childHold()
	case "gc":
		err = childGC()
	case "initundo":
		err = childInitUndo()
	default:
		err = fmt.Errorf("unknown child %q", child)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// putStreamedImage writes a layer of n pseudo-random bytes through a blob
// writer (as an import would) and an image using it.
func putStreamedImage(l *Layout, seed uint64, n int) (ocispec.Descriptor, error) {
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	w, err := l.Blobs().NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	if _, err := w.ReadFrom(io.LimitReader(src, int64(n))); err != nil {
		return ocispec.Descriptor{}, err
	}
	d, size, err := w.Commit()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfg := NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err := cfg.AppendLayer(d); err != nil {
		return ocispec.Descriptor{}, err
	}
	cfg.SetRuntime("Env", []string{"SEED=" + strconv.FormatUint(seed, 10)})
	return l.PutImage(cfg, []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: size}}, nil)
}

func childEnvInt(name string) int {
	n, _ := strconv.Atoi(os.Getenv(name))
	return n
}

// childTag tags STRATA_COUNT new images PREFIX-i and moves the tag
// "shared" along.
func childTag() error {
	l, err := Open(os.Getenv("STRATA_DIR"))
	if err != nil {
		return err
	}
	defer l.Close()
	prefix := os.Getenv("STRATA_PREFIX")
	for i := range childEnvInt("STRATA_COUNT") {
		md, err := putStreamedImage(l, uint64(childEnvInt("STRATA_SEED")+i), 2000+i)
		if err != nil {
			return err
		}
		if err := l.Tag(md, fmt.Sprintf("%s-%d", prefix, i), "shared"); err != nil {
			return err
		}
	}
	return nil
}

var imgName = regexp.MustCompile(`^img-([0-9]+)$`)

// churnState reads the numbers of the img-N tags of a layout, sorted.
func churnState(l *Layout) ([]int, error) {
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, m := range idx.Manifests {
		if s := imgName.FindStringSubmatch(m.Annotations[AnnotationRefName]); s != nil {
			n, _ := strconv.Atoi(s[1])
			nums = append(nums, n)
		}
	}
	sort.Ints(nums)
	return nums, nil
}

// childChurn continues the sequence a killed predecessor left: image N is
// tagged img-N and latest in one update, then img-(N-3) is removed.
func childChurn() error {
	l, err := Open(os.Getenv("STRATA_DIR"))
	if err != nil {
		return err
	}
	defer l.Close()
	nums, err := churnState(l)
	if err != nil {
		return err
	}
	next := 0
	if len(nums) > 0 {
		next = nums[len(nums)-1] + 1
	}
	// A predecessor killed between its tag and its untag left one tag
	// too many: finish its work before being killable.
	for _, n := range nums {
		if n <= next-4 {
			if err := l.Untag(fmt.Sprintf("img-%d", n)); err != nil {
				return err
			}
		}
	}
	fmt.Println("ready")
	for n := next; ; n++ {
		md, err := putStreamedImage(l, uint64(n), 64<<10+(n*7919)%(2<<20))
		if err != nil {
			return err
		}
		if err := l.Tag(md, fmt.Sprintf("img-%d", n), "latest"); err != nil {
			return err
		}
		if n >= 3 {
			if err := l.Untag(fmt.Sprintf("img-%d", n-3)); err != nil && !errors.Is(err, ErrRefNotFound) {
				return err
			}
		}
	}
}

// childHold writes an image without naming it, says so, waits for its
// stdin to close and only then tags it.
func childHold() error {
	l, err := Open(os.Getenv("STRATA_DIR"))
	if err != nil {
		return err
	}
	defer l.Close()
	md, err := putStreamedImage(l, 77, 100000)
	if err != nil {
		return err
	}
	fmt.Println(md.Digest)
	io.Copy(io.Discard, os.Stdin)
	return l.Tag(md, "held")
}

// childGC adds unreferenced blobs and collects them, over and over.
func childGC() error {
	l, err := Open(os.Getenv("STRATA_DIR"))
	if err != nil {
		return err
	}
	defer l.Close()
	fmt.Println("ready")
	for i := 0; ; i++ {
		for j := range 20 {
			if _, err := putStreamedImage(l, uint64(1_000_000+i*100+j), 50000); err != nil {
				return err
			}
		}
		if _, err := l.GC(context.Background()); err != nil {
			return err
		}
	}
}

type child struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	stdin  io.WriteCloser
	stderr *bytes.Buffer
}

func startChild(t *testing.T, mode, dir string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "STRATA_LAYOUT_CHILD="+mode, "STRATA_DIR="+dir), env...)
	c := &child{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewReader(out)
	if c.stdin, err = cmd.StdinPipe(); err != nil {
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
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	s, err := c.out.ReadString('\n')
	if err != nil {
		c.cmd.Wait()
		t.Fatalf("child: %v: %s", err, c.stderr.String())
	}
	return strings.TrimSpace(s)
}

func (c *child) wait(t *testing.T) {
	t.Helper()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child: %v: %s", err, c.stderr.String())
	}
}

// Taggers in several processes and several goroutines on one layout lose
// no update.
func TestConcurrentTaggersLoseNothing(t *testing.T) {
	l := initTest(t)
	const procs, goroutines, each = 3, 3, 8
	var kids []*child
	for p := range procs {
		kids = append(kids, startChild(t, "tag", l.Dir(), fmt.Sprintf("STRATA_PREFIX=p%d", p),
			fmt.Sprintf("STRATA_COUNT=%d", each), fmt.Sprintf("STRATA_SEED=%d", 1000*(p+1))))
	}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine with its own Layout, as separate commands would.
			gl, err := Open(l.Dir())
			if err != nil {
				t.Error(err)
				return
			}
			defer gl.Close()
			for i := range each {
				md, err := putStreamedImage(gl, uint64(100000*(g+1)+i), 3000+i)
				if err == nil {
					err = gl.Tag(md, fmt.Sprintf("g%d-%d", g, i), "shared")
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for _, k := range kids {
		k.wait(t)
	}
	wg.Wait()
	got := names(t, l)
	var want []string
	for p := range procs {
		for i := range each {
			want = append(want, fmt.Sprintf("p%d-%d", p, i))
		}
	}
	for g := range goroutines {
		for i := range each {
			want = append(want, fmt.Sprintf("g%d-%d", g, i))
		}
	}
	want = append(want, "shared")
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Fatalf("names after concurrent tagging:\n got %v\nwant %v", got, want)
	}
	mustFsckClean(t, l)
	if res, err := l.GC(context.Background()); err != nil || len(res.Removed) != 0 {
		t.Fatalf("gc removed %v: %v", res, err)
	}
}

// lockWaiters reports whether some process waits for a lock on file p, as
// /proc/locks shows it.
func lockWaiters(t *testing.T, p string) bool {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Fatal(err)
	}
	suffix := ":" + strconv.FormatUint(st.Ino, 10)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 6 && f[1] == "->" && strings.HasSuffix(f[6], suffix) {
			return true
		}
	}
	return false
}

// gc waits while another process holds the layout for writing, and then
// keeps what that process wrote and named.
func TestGCWaitsForWriter(t *testing.T) {
	l := initTest(t)
	loose, _ := l.PutBytes("application/octet-stream", []byte("loose"))
	l.Close()
	k := startChild(t, "hold", l.Dir())
	md := digest.Digest(k.line(t))

	gl, err := Open(l.Dir())
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	type result struct {
		res *GCResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := gl.GC(context.Background())
		done <- result{res, err}
	}()
	// Wait until gc is blocked on the writer's hold, then let the writer
	// name its image and exit.
	lock := filepath.Join(l.Dir(), StateDir, "gc.lock")
	for !lockWaiters(t, lock) {
		select {
		case r := <-done:
			t.Fatalf("gc ran while a writer held the layout: %+v %v", r.res, r.err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	if !gl.Blobs().Has(md, -1) {
		t.Fatal("the writer's manifest is gone while gc waits")
	}
	k.stdin.Close()
	k.wait(t)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !slices.Equal(r.res.Removed, []digest.Digest{loose.Digest}) {
		t.Errorf("gc removed %v, want only %s", r.res.Removed, loose.Digest)
	}
	if _, err := gl.Image("held", nil); err != nil {
		t.Fatal(err)
	}
	mustFsckClean(t, gl)
}

// A process killed with SIGKILL at random points while it writes large
// blobs and updates index.json leaves a layout fsck calls clean, in a
// state the process had published: no update half done, none lost.
func TestKilledWriterLeavesLayoutConsistent(t *testing.T) {
	l := initTest(t)
	dir := l.Dir()
	l.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	iterations := 30
	if testing.Short() {
		iterations = 4
	}
	last := -1
	for it := range iterations {
		k := startChild(t, "churn", dir)
		k.line(t)
		time.Sleep(time.Duration(20+rng.IntN(150)) * time.Millisecond)
		k.cmd.Process.Signal(syscall.SIGKILL)
		k.cmd.Wait()

		l, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		probs, err := l.Fsck(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range probs {
			t.Errorf("iteration %d: fsck: %s", it, p)
		}
		nums, err := churnState(l)
		if err != nil {
			t.Fatalf("iteration %d: %v", it, err)
		}
		// The tags form a run of 3 or 4 ending at latest's image (fewer at
		// the start), and the sequence never goes back.
		if len(nums) > 0 {
			top := nums[len(nums)-1]
			for i, n := range nums {
				if n != top-len(nums)+1+i {
					t.Fatalf("iteration %d: tags not a run: %v", it, nums)
				}
			}
			if (top >= 3 && len(nums) < 3) || len(nums) > 4 {
				t.Fatalf("iteration %d: an update was lost or half done: %v", it, nums)
			}
			if top < last {
				t.Fatalf("iteration %d: went back from img-%d to img-%d", it, last, top)
			}
			last = top
			lat, err := l.Resolve("latest")
			if err != nil {
				t.Fatalf("iteration %d: %v", it, err)
			}
			topDesc, _ := l.Resolve(fmt.Sprintf("img-%d", top))
			if lat.Digest != topDesc.Digest {
				t.Fatalf("iteration %d: latest is not img-%d", it, top)
			}
			for _, n := range nums {
				if _, err := l.Image(fmt.Sprintf("img-%d", n), nil); err != nil {
					t.Fatalf("iteration %d: %v", it, err)
				}
			}
		}
		if it%3 == 2 || it == iterations-1 {
			if _, err := l.GC(context.Background()); err != nil {
				t.Fatalf("iteration %d: gc: %v", it, err)
			}
			ents, _ := os.ReadDir(l.Blobs().StagingDir())
			if len(ents) != 0 {
				t.Errorf("iteration %d: gc left %d staging files", it, len(ents))
			}
			mustFsckClean(t, l)
		}
		l.Close()
	}
	t.Logf("reached img-%d", last)
}

// A gc killed at a random point removes nothing that is named.
func TestKilledGCKeepsNamedImages(t *testing.T) {
	l := initTest(t)
	var want []ocispec.Descriptor
	for i := range 4 {
		md, err := putStreamedImage(l, uint64(i), 300000)
		if err != nil {
			t.Fatal(err)
		}
		l.Tag(md, fmt.Sprintf("keep-%d", i))
		want = append(want, md)
	}
	l.Close()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for it := range 8 {
		k := startChild(t, "gc", l.Dir())
		k.line(t)
		time.Sleep(time.Duration(rng.IntN(120)) * time.Millisecond)
		k.cmd.Process.Signal(syscall.SIGKILL)
		k.cmd.Wait()
		ol, err := Open(l.Dir())
		if err != nil {
			t.Fatal(err)
		}
		for i, md := range want {
			img, err := ol.Image(fmt.Sprintf("keep-%d", i), nil)
			if err != nil || img.Descriptor.Digest != md.Digest {
				t.Fatalf("iteration %d: keep-%d: %v", it, i, err)
			}
		}
		mustFsckClean(t, ol)
		ol.Close()
	}
}
