package chunkpipe

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestPipe(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10_007)
	for _, tc := range []struct {
		name    string
		src     func() io.Reader
		wantErr string // error of the Read side ("" for none)
	}{
		{"whole", func() io.Reader { return bytes.NewReader(data) }, ""},
		{"one byte at a time", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) }, ""},
		{"empty", func() io.Reader { return bytes.NewReader(nil) }, ""},
		{"source fails", func() io.Reader {
			return io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(errors.New("boom")))
		}, "unpack: boom"},
	} {
		for _, aside := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/aside=%v", tc.name, aside), func(t *testing.T) {
				var sink bytes.Buffer
				p := New(tc.src(), &sink, Options{ChunkSize: 4096, Chunks: 3, ReadContext: "unpack", WriteContext: "store", SinkAside: aside})
				defer p.Stop()
				got, err := io.ReadAll(p)
				werr := p.Wait()
				if tc.wantErr != "" {
					if err == nil || err.Error() != tc.wantErr || werr == nil || p.ReadErr() == nil {
						t.Fatalf("read error %v, wait error %v, want %q", err, werr, tc.wantErr)
					}
					return
				}
				if err != nil || werr != nil {
					t.Fatalf("read error %v, wait error %v", err, werr)
				}
				want := data
				if tc.name == "empty" {
					want = nil
				}
				if !bytes.Equal(got, want) || !bytes.Equal(sink.Bytes(), want) {
					t.Fatalf("read %d bytes, sink got %d, want %d", len(got), sink.Len(), len(want))
				}
			})
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestPipeSinkFails(t *testing.T) {
	for _, aside := range []bool{false, true} {
		p := New(strings.NewReader(strings.Repeat("some bytes", 100)), failWriter{}, Options{ChunkSize: 4, Chunks: 2, ReadContext: "read", WriteContext: "store", SinkAside: aside})
		if _, err := io.ReadAll(p); err == nil || err.Error() != "store: disk full" {
			t.Fatalf("aside=%v: read error %v", aside, err)
		}
		if err := p.Wait(); err == nil || err.Error() != "store: disk full" {
			t.Fatalf("aside=%v: Wait: %v", aside, err)
		}
		p.Stop()
	}
}

// Stop ends a producer that nobody reads.
func TestPipeStop(t *testing.T) {
	for _, aside := range []bool{false, true} {
		p := New(bytes.NewReader(make([]byte, 1<<20)), io.Discard, Options{ChunkSize: 1024, Chunks: 2, SinkAside: aside})
		p.Stop()
		p.Stop()
	}
}
