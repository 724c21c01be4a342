package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReaderStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := strings.NewReader(strings.Repeat("x", 4*checkEvery))
	r := Reader(ctx, src)
	buf := make([]byte, checkEvery/2)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	// At most checkEvery bytes pass before the check.
	n, err := io.Copy(io.Discard, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	if n > checkEvery {
		t.Fatalf("%d bytes read after cancel", n)
	}
}

func TestReaderDoneBefore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Reader(ctx, strings.NewReader("x")).Read(make([]byte, 1)); !errors.Is(err, context.Canceled) {
		t.Fatalf("read = %v", err)
	}
	if _, err := Writer(ctx, io.Discard).Write([]byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("write = %v", err)
	}
}

func TestNeverDone(t *testing.T) {
	src := strings.NewReader("x")
	if Reader(context.Background(), src) != io.Reader(src) {
		t.Fatal("Background wrapped the reader")
	}
	var b bytes.Buffer
	if Writer(context.Background(), &b) != io.Writer(&b) {
		t.Fatal("Background wrapped the writer")
	}
}

func TestWriterStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := Writer(ctx, io.Discard)
	chunk := make([]byte, 64<<10)
	if _, err := w.Write(chunk); err != nil {
		t.Fatal(err)
	}
	cancel()
	var err error
	n := 0
	for err == nil && n < 2*checkEvery {
		var m int
		m, err = w.Write(chunk)
		n += m
	}
	if !errors.Is(err, context.Canceled) || n > checkEvery {
		t.Fatalf("wrote %d bytes after cancel, err %v", n, err)
	}
}
