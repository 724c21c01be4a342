package compression

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os/exec"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/strata-oci/strata/internal/testenv"
)

func TestDetect(t *testing.T) {
	tests := []struct {
		head []byte
		want Kind
	}{
		{[]byte{0x1f, 0x8b, 0x08, 0}, Gzip},
		{[]byte{0x1f, 0x8b}, Gzip},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd, 0x04}, Zstd},
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00}, Xz},
		{[]byte("BZh91AY&SY"), Bzip2},
		{[]byte("BZ"), None},
		{[]byte{0x1f}, None},
		{[]byte{0x28, 0xb5, 0x2f}, None},
		{[]byte("etc/\x00\x00"), None},
		{nil, None},
	}
	for _, tc := range tests {
		if got := Detect(tc.head); got != tc.want {
			t.Errorf("Detect(%q) = %s, want %s", tc.head, got, tc.want)
		}
	}
}

func TestParseKind(t *testing.T) {
	tests := []struct {
		in   string
		want Kind
		ok   bool
	}{
		{"gzip", Gzip, true},
		{"zstd", Zstd, true},
		{"none", None, true},
		{"uncompressed", None, true},
		{"xz", "", false},
		{"bzip2", "", false},
		{"lz4", "", false},
		{"", "", false},
	}
	for _, tc := range tests {
		got, err := ParseKind(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseKind(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrUnsupported) {
			t.Errorf("ParseKind(%q): %v is not ErrUnsupported", tc.in, err)
		}
	}
}

// cliCompress compresses with the command-line tool, an implementation
// independent of the one under test.
func cliCompress(t *testing.T, tool string, in []byte) []byte {
	t.Helper()
	testenv.RequireTool(t, tool)
	cmd := exec.Command(tool, "-c")
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v: %s", tool, err, errb.String())
	}
	return out.Bytes()
}

func TestReadersDecodeToolOutput(t *testing.T) {
	data := layerLike(1 << 20)
	for _, tc := range []struct {
		tool string
		kind Kind
	}{{"gzip", Gzip}, {"zstd", Zstd}, {"xz", Xz}, {"bzip2", Bzip2}, {"", None}} {
		t.Run(string(tc.kind), func(t *testing.T) {
			in := data
			if tc.tool != "" {
				in = cliCompress(t, tc.tool, data)
			}
			rc, kind, err := NewSniffingReader(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if kind != tc.kind {
				t.Fatalf("sniffed %s, want %s", kind, tc.kind)
			}
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("decompressed data differs")
			}
		})
	}
}

func TestWriterRoundTrip(t *testing.T) {
	data := layerLike(2 << 20)
	for _, k := range []Kind{Gzip, Zstd, None} {
		for _, level := range []int{DefaultLevel, 1} {
			if k == None && level != DefaultLevel {
				continue
			}
			var buf bytes.Buffer
			zw, err := NewWriter(&buf, k, level)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := zw.Write(data); err != nil {
				t.Fatal(err)
			}
			if err := zw.Close(); err != nil {
				t.Fatal(err)
			}
			if got := Detect(buf.Bytes()); got != k {
				t.Fatalf("%s level %d output detected as %s", k, level, got)
			}
			// The system tool reads what we wrote.
			if k != None {
				cmd := exec.Command(testenv.RequireTool(t, string(k)), "-d", "-c")
				cmd.Stdin = bytes.NewReader(buf.Bytes())
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, data) {
					t.Fatalf("%s -d of our %s output: %v", k, k, err)
				}
			}
		}
	}
}

func TestWriterRefusesReadOnlyFormats(t *testing.T) {
	for _, k := range []Kind{Xz, Bzip2, "lz4"} {
		if _, err := NewWriter(io.Discard, k, DefaultLevel); !errors.Is(err, ErrUnsupported) {
			t.Errorf("NewWriter(%s): %v", k, err)
		}
	}
	if _, err := NewReader(bytes.NewReader(nil), "lz4"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NewReader(lz4): %v", err)
	}
	if _, err := NewWriter(io.Discard, Gzip, 42); err == nil {
		t.Error("gzip level 42 accepted")
	}
}

func TestSniffKeepsEveryByte(t *testing.T) {
	for _, in := range []string{"", "a", "BZ", strings.Repeat("x", 100000)} {
		k, r, err := Sniff(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || string(got) != in || k != None {
			t.Fatalf("Sniff(%d bytes): kind %s, %d bytes back, %v", len(in), k, len(got), err)
		}
	}
}

// FuzzReaders feeds arbitrary bytes to every decompressor: they must fail
// cleanly, never panic, and decode only what the input holds.
func FuzzReaders(f *testing.F) {
	f.Add([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x00, 0x01, 0x00, 0x00})
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0x00, 0x00, 0x04})
	f.Add([]byte("BZh91AY&SY\x00\x00"))
	f.Add([]byte("plain text"))
	f.Fuzz(func(t *testing.T, in []byte) {
		k := Detect(in)
		switch k {
		case None, Gzip, Zstd, Xz, Bzip2:
		default:
			t.Fatalf("Detect returned %q", k)
		}
		for _, kind := range []Kind{k, Gzip, Zstd, Xz, Bzip2} {
			rc, err := NewReader(bytes.NewReader(in), kind)
			if err != nil {
				continue
			}
			// Bound the output: a small input may expand a lot.
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
			rc.Close()
		}
		rc, _, err := NewSniffingReader(bytes.NewReader(in))
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(rc, 1<<20))
			rc.Close()
		}
	})
}

// zstdWithWindow compresses data as one frame whose header declares a
// window of the given size (a power of two from 1 KiB): data is encoded
// with a small window, which any larger one contains, and the header's
// window descriptor is then set, so the test needs no large buffers.
func zstdWithWindow(t *testing.T, data []byte, window int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithWindowSize(1<<20), zstd.WithSingleSegment(false), zstd.WithEncoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	// A flush before the end writes the frame header while the size is
	// still unknown: a window descriptor, no single segment.
	if _, err := zw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	z := buf.Bytes()
	// Magic (4 bytes), frame header descriptor, window descriptor:
	// exponent (log2 of the window - 10) in its top five bits.
	if z[4]&0x20 != 0 || window&(window-1) != 0 || window < 1<<10 {
		t.Fatalf("cannot declare a window of %d in header % x", window, z[:6])
	}
	z[5] = byte(bits.Len(uint(window))-1-10) << 3
	var h zstd.Header
	if err := h.Decode(z); err != nil || h.WindowSize != uint64(window) {
		t.Fatalf("header declares %d (%v), want %d", h.WindowSize, err, window)
	}
	return z
}

// TestZstdWindowLimit: a stream whose frame asks for a window over
// MaxZstdWindow is refused with ErrWindowTooLarge, whether it is read
// with Read or WriteTo; one at the limit decompresses.
func TestZstdWindowLimit(t *testing.T) {
	data := layerLike(64 << 10)
	for _, tc := range []struct {
		window int
		ok     bool
	}{
		{1 << 20, true},
		{MaxZstdWindow, true},
		{2 * MaxZstdWindow, false},
		{4 * MaxZstdWindow, false}, // zstd --long=29: 530 MB of memory before the limit
	} {
		for _, how := range []string{"Read", "WriteTo"} {
			t.Run(fmt.Sprintf("%dMiB/%s", tc.window>>20, how), func(t *testing.T) {
				z := zstdWithWindow(t, data, tc.window)
				rc, err := NewReader(bytes.NewReader(z), Zstd)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				var out bytes.Buffer
				if how == "Read" {
					_, err = io.Copy(&out, struct{ io.Reader }{rc})
				} else {
					_, err = rc.(io.WriterTo).WriteTo(&out)
				}
				if tc.ok {
					if err != nil || !bytes.Equal(out.Bytes(), data) {
						t.Fatalf("window %d: %v", tc.window, err)
					}
					return
				}
				if !errors.Is(err, ErrWindowTooLarge) || !strings.Contains(err.Error(), "128 MiB") {
					t.Fatalf("window %d: %v; want ErrWindowTooLarge", tc.window, err)
				}
			})
		}
	}
}
