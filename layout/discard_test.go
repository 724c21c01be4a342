package layout

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestDiscard(t *testing.T) {
	dir := t.TempDir()
	l, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	named, _ := copyTestImage(t, l, "linux/amd64", CompressionGzip)
	if err := l.Tag(named, "kept"); err != nil {
		t.Fatal(err)
	}
	loose, err := l.PutBytes("application/octet-stream", []byte("added by a failed operation"))
	if err != nil {
		t.Fatal(err)
	}
	var a Added
	a.Add(named.Digest) // reached from index.json: must stay
	a.Add(loose.Digest)

	// Another process holds the layout for writing: nothing is removed,
	// and our own hold survives the failed attempt.
	other, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Hold(); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Discard(&a); err != nil || n != 0 {
		t.Fatalf("discard with another holder: %d, %v", n, err)
	}
	if !l.Blobs().Has(loose.Digest, -1) {
		t.Fatal("a blob was removed while another writer held the layout")
	}
	other.Close()

	a.Add(named.Digest)
	a.Add(loose.Digest)
	if n, err := l.Discard(&a); err != nil || n != 1 {
		t.Fatalf("discard: %d, %v", n, err)
	}
	for d, want := range map[digest.Digest]bool{named.Digest: true, loose.Digest: false} {
		if got := l.Blobs().Has(d, -1); got != want {
			t.Errorf("blob %s present = %v, want %v", d, got, want)
		}
	}
	// The shared hold is back: gc in another process must wait for us.
	g, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	done := make(chan error, 1)
	go func() { _, err := g.GC(context.Background()); done <- err }()
	time.Sleep(100 * time.Millisecond) // time for gc to get the lock if it could
	select {
	case err := <-done:
		t.Fatalf("gc ran while the layout was held: %v", err)
	default:
	}
	l.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
