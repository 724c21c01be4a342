package main

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestProgressInert(t *testing.T) {
	p := &progress{}
	src := strings.NewReader("hello")
	if r := p.Reader("x", 5, src); r != io.Reader(src) {
		t.Fatal("inert Reader wrapped its reader")
	}
	var buf bytes.Buffer
	if w := p.Writer("x", 5, &buf); w != io.Writer(&buf) {
		t.Fatal("inert Writer wrapped its writer")
	}
	c := p.Counter("x", 3)
	c.Add(1) // a nil counter is a no-op
	p.Bytes("x", 3).Add(1)
	p.Wait()
	var nilp *progress
	nilp.Wait()
}

type failReader struct{ n int }

func (f *failReader) Read(b []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("boom")
	}
	f.n--
	b[0] = 'x'
	return 1, nil
}

func TestProgressActive(t *testing.T) {
	tests := []struct {
		name string
		size int64
		src  func() io.Reader
		want int
		err  bool
	}{
		{"known size", 1000, func() io.Reader { return bytes.NewReader(make([]byte, 1000)) }, 1000, false},
		{"unknown size", -1, func() io.Reader { return bytes.NewReader(make([]byte, 777)) }, 777, false},
		{"stops early", 1000, func() io.Reader { return &failReader{n: 10} }, 10, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			p := newProgressTo(&out)
			r := p.Reader(tc.name, tc.size, tc.src())
			var got bytes.Buffer
			w := p.Writer("copy", tc.size, &got)
			n, err := io.Copy(w, r)
			if (err != nil) != tc.err || int(n) != tc.want || got.Len() != tc.want {
				t.Fatalf("copied %d, %v; want %d, error %v", n, err, tc.want, tc.err)
			}
			c := p.Counter("items", 4)
			c.Add(2) // short of its total: Wait must not hang
			b := p.Bytes("by hand", 100)
			b.Add(100)
			p.Wait()
			for _, want := range []string{tc.name, "copy", "items", "2 / 4", "by hand"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("progress output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}
