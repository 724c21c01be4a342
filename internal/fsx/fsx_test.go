package fsx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

func TestWriteFileConcurrent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := WriteFile(p, []byte(strings.Repeat(fmt.Sprint(i%10), 4096)), 0o644); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// One writer's whole content, never a mix.
	if len(b) != 4096 || strings.Trim(string(b), string(b[:1])) != "" {
		t.Fatalf("content mixed from several writers: %.40q...", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left behind: %v", ents)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestAtomicFileDiscardAndTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x")
	f, err := CreateAtomic(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if b := filepath.Base(f.Name()); !strings.HasPrefix(b, ".x.tmp-") {
		t.Errorf("temporary name %q", b)
	}
	f.Discard()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left behind: %v", ents)
	}
	f, err = CreateAtomic(p, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("later"); err != nil {
		t.Fatal(err)
	}
	if err := f.Rename(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "later" {
		t.Fatalf("got %q", b)
	}
	if err := SyncFiles(dir, "x"); err != nil {
		t.Fatal(err)
	}
}

func TestXattrs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// More names than the first buffer holds, and a value larger than
	// its first read.
	want := map[string][]byte{}
	for i := range 40 {
		n := fmt.Sprintf("user.attribute-with-a-long-name-%02d", i)
		want[n] = []byte(fmt.Sprint(i))
		if i == 39 {
			want[n] = []byte(strings.Repeat("v", 339))
		}
		if err := unix.Lsetxattr(a, n, want[n], 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				t.Skip("no user xattrs on this file system")
			}
			t.Fatal(err)
		}
	}
	names, err := ListXattrs(a)
	if err != nil || len(names) != len(want) {
		t.Fatalf("ListXattrs: %d names, %v", len(names), err)
	}
	got, err := ReadXattrs(a)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ReadXattrs: %v", err)
	}
	if v, err := GetXattr(a, "user.attribute-with-a-long-name-39"); err != nil || len(v) != 339 {
		t.Fatalf("GetXattr: %d bytes, %v", len(v), err)
	}
	if err := CopyXattrs(a, b, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadXattrs(b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("CopyXattrs lost attributes")
	}
	c := filepath.Join(dir, "c")
	if err := os.WriteFile(c, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	in, _ := unix.Open(a, unix.O_RDONLY, 0)
	out, _ := unix.Open(c, unix.O_RDWR, 0)
	defer unix.Close(in)
	defer unix.Close(out)
	if err := CopyXattrsFd(out, in, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadXattrs(c); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatal("CopyXattrsFd lost attributes")
	}
	if x, err := ReadXattrs(dir); err != nil || x != nil {
		t.Fatalf("no xattrs: %v %v", x, err)
	}
}

func TestReadDirents(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 2000 {
		n := fmt.Sprintf("entry-%04d", i)
		want = append(want, n)
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "zdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ents, err := ReadDirents(fd)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		if e.Name == "zdir" {
			if e.Type != unix.DT_DIR && e.Type != unix.DT_UNKNOWN {
				t.Errorf("zdir type %d", e.Type)
			}
			continue
		}
		got = append(got, e.Name)
	}
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %d names, want %d", len(got), len(want))
	}
	names, err := ReadDirNames(fd, dir)
	if err != nil || len(names) != 2001 {
		t.Fatalf("ReadDirNames: %d, %v", len(names), err)
	}
}

// walkTree walks a tree of depth levels with fan subdirectories each, as
// a tree copier does, and fails at the path bad.
func walkTree(w *Walk, depth, fan int, path, bad string, visited *atomic.Int64) error {
	visited.Add(1)
	if path == bad {
		return errors.New("bad " + path)
	}
	if depth == 0 {
		return nil
	}
	g := w.Group()
	for i := range fan {
		p := fmt.Sprintf("%s/%d", path, i)
		if err := g.Go(func() error { return walkTree(w, depth-1, fan, p, bad, visited) }); err != nil {
			g.Wait()
			return err
		}
	}
	return g.Wait()
}

func TestWalk(t *testing.T) {
	for _, extra := range []int{0, 1, 4} {
		t.Run(fmt.Sprint(extra), func(t *testing.T) {
			var n atomic.Int64
			w := NewWalk(extra)
			if err := walkTree(w, 4, 4, "", "none", &n); err != nil {
				t.Fatal(err)
			}
			if n.Load() != 1+4+16+64+256 {
				t.Fatalf("visited %d", n.Load())
			}
			n.Store(0)
			w = NewWalk(extra)
			err := walkTree(w, 4, 4, "", "/1/2", &n)
			if err == nil || err.Error() != "bad /1/2" || w.Err() == nil {
				t.Fatalf("err %v", err)
			}
			if n.Load() >= 1+4+16+64+256 {
				t.Errorf("walk went on after its error: %d visited", n.Load())
			}
		})
	}
}

func TestTreeConfines(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "outside"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "outside"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../outside", filepath.Join(root, "d", "up")); err != nil {
		t.Fatal(err)
	}
	tr, err := OpenTree(root)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	f, err := tr.OpenRegular("d/up")
	if err == nil {
		f.Close()
		t.Fatal("a final symlink was followed")
	}
	fd, err := tr.Open("d/up", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	n, _ := unix.Read(fd, b)
	unix.Close(fd)
	if string(b[:n]) != "inside" {
		t.Fatalf("resolved outside the root: %q", b[:n])
	}
	dfd, err := tr.MkdirAll("a/b/c", nil)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(dfd)
	if err := RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "outside")); err != nil {
		t.Fatal("removed outside the root")
	}
}
