package layout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// childInitUndo makes the layout STRATA_DIR if needed and writes an image
// into it; with STRATA_FAIL set it then fails and takes back what it
// wrote, else it names the image STRATA_NAME and prints the name.
func childInitUndo() error {
	time.Sleep(time.Duration(childEnvInt("STRATA_DELAY_MS")) * time.Millisecond)
	l, err := Init(os.Getenv("STRATA_DIR"))
	if err != nil {
		return err
	}
	defer l.Close()
	md, err := putStreamedImage(l, uint64(childEnvInt("STRATA_SEED")), 30000+childEnvInt("STRATA_SEED"))
	if err != nil {
		return err
	}
	if os.Getenv("STRATA_FAIL") != "" {
		u, err := l.Undo()
		if err != nil {
			return err
		}
		fmt.Printf("undone removed=%v blobs=%d kept=%d busy=%v\n", u.Removed, u.Blobs, u.Kept, u.Busy)
		return nil
	}
	name := os.Getenv("STRATA_NAME")
	if err := l.Tag(md, name); err != nil {
		return err
	}
	fmt.Println(name)
	return nil
}

func mustFsck(t *testing.T, dir string) {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	probs, err := l.Fsck(context.Background())
	if err != nil || len(probs) > 0 {
		t.Fatalf("fsck %s: %v %v", dir, probs, err)
	}
}

// A failed command takes back a layout it made when nobody else has used
// it: the directory when Init made it, the layout's files when the
// directory was there, empty.
func TestUndoRemovesItsOwnNewLayout(t *testing.T) {
	base := t.TempDir()
	missing := filepath.Join(base, "new")
	empty := filepath.Join(base, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{missing, empty} {
		l, err := Init(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !l.Created() {
			t.Fatalf("%s: Init did not report creating the layout", dir)
		}
		if _, err := putStreamedImage(l, 1, 5000); err != nil {
			t.Fatal(err)
		}
		u, err := l.Undo()
		if err != nil || !u.Removed || !u.AsItWas() {
			t.Fatalf("%s: undo %+v, %v", dir, u, err)
		}
	}
	if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the directory Init made is still there: %v", err)
	}
	if ents, err := os.ReadDir(empty); err != nil || len(ents) != 0 {
		t.Fatalf("the empty directory holds %v (%v)", ents, err)
	}
}

// A failed command in a layout it found takes back only the blobs it
// wrote, never the layout or another image's blobs.
func TestUndoInExistingLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "l")
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := putStreamedImage(l, 2, 6000)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Tag(kept, "kept"); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l2, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Created() {
		t.Fatal("Init of an existing layout says it created it")
	}
	loose, err := l2.PutBytes("application/octet-stream", []byte("written by a failing command"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := l2.Undo()
	if err != nil || u.Removed || u.Blobs != 1 || !u.AsItWas() {
		t.Fatalf("undo %+v, %v", u, err)
	}
	if l2.Blobs().Has(loose.Digest, -1) {
		t.Fatal("the failed command's blob stays")
	}
	if _, err := l2.Resolve("kept"); err != nil {
		t.Fatal(err)
	}
	mustFsck(t, dir)
}

// The creator of a layout fails after another process completed an image
// in it: the other image stays, only the creator's blobs go.
func TestUndoKeepsOtherProcessesWork(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new")
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := putStreamedImage(l, 3, 7000)
	if err != nil {
		t.Fatal(err)
	}
	// The other process finishes (exit 0) while we still hold the layout.
	other := startChild(t, "initundo", dir, "STRATA_SEED=4", "STRATA_NAME=theirs")
	if got := other.line(t); got != "theirs" {
		t.Fatalf("child said %q", got)
	}
	other.wait(t)
	u, err := l.Undo()
	if err != nil || u.Removed || u.Busy || u.Kept != 0 {
		t.Fatalf("undo %+v, %v", u, err)
	}
	o, err := Open(dir)
	if err != nil {
		t.Fatalf("the layout another process completed an image in is gone: %v", err)
	}
	defer o.Close()
	if _, err := o.Resolve("theirs"); err != nil {
		t.Fatal(err)
	}
	if o.Blobs().Has(mine.Digest, -1) {
		t.Fatal("the failed creator's manifest stays")
	}
	mustFsck(t, dir)

	// A process that only held the layout and named nothing (an empty
	// index) also keeps its creator from removing it.
	dir2 := filepath.Join(t.TempDir(), "new2")
	l2, err := Init(dir2)
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	holder := startChild(t, "hold", dir2)
	held := holder.line(t)
	// While it holds the layout nothing can be taken back.
	u, err = l2.Undo()
	if err != nil || u.Removed || !u.Busy {
		t.Fatalf("undo while another process holds the layout: %+v, %v", u, err)
	}
	holder.stdin.Close()
	holder.wait(t)
	o2, err := Open(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer o2.Close()
	if d, err := o2.Resolve("held"); err != nil || d.Digest.String() != held {
		t.Fatalf("held: %v %v", d.Digest, err)
	}
}

// Processes that make one new layout at once, some failing and taking
// back what they wrote, some naming an image: every named image stays,
// and the layout is whole.
func TestInitUndoRace(t *testing.T) {
	for round := range 6 {
		dir := filepath.Join(t.TempDir(), "new")
		var kids []*child
		var names []string
		for i := range 8 {
			env := []string{fmt.Sprintf("STRATA_SEED=%d", round*100+i), fmt.Sprintf("STRATA_NAME=n%d", i),
				fmt.Sprintf("STRATA_DELAY_MS=%d", i*(40+round*15))}
			// Most fail, so the layout is often taken back while the
			// others are opening it.
			if (i+round)%3 != 0 {
				env = append(env, "STRATA_FAIL=1")
			} else {
				names = append(names, fmt.Sprintf("n%d", i))
			}
			kids = append(kids, startChild(t, "initundo", dir, env...))
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		removed := 0
		for _, k := range kids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, _ := io.ReadAll(k.out)
				mu.Lock()
				if strings.Contains(string(out), "removed=true") {
					removed++
				}
				mu.Unlock()
				if err := k.cmd.Wait(); err != nil {
					t.Errorf("child: %v: %s", err, k.stderr.String())
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("round %d: %d failing children removed the layout they made", round, removed)
		l, err := Open(dir)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for _, n := range names {
			if _, err := l.Resolve(n); err != nil {
				t.Errorf("round %d: %s lost: %v", round, n, err)
			}
		}
		l.Close()
		mustFsck(t, dir)
		ents, _ := os.ReadDir(filepath.Join(dir, StateDir))
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp-") {
				t.Errorf("round %d: %s left", round, e.Name())
			}
		}
	}
}
