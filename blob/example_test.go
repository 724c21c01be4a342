package blob_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/blob"
)

// A blob is streamed in, verified against the digest the caller expects,
// and read back through a verifying reader.
func Example() {
	dir, err := os.MkdirTemp("", "blob-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s := blob.New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))

	content := "hello, layers\n"
	want := digest.FromString(content)
	d, size, err := s.Put(context.Background(), strings.NewReader(content), want, int64(len(content)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d == want, size)

	r, err := s.Open(d, size)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r) // an error here, not io.EOF, if the blob was changed on disk
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(b))
	// Output:
	// true 14
	// hello, layers
}

// Content that does not match the expected digest never becomes visible.
func ExampleStore_Put_mismatch() {
	dir, err := os.MkdirTemp("", "blob-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s := blob.New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))

	want := digest.FromString("what the manifest promised")
	_, _, err = s.Put(context.Background(), strings.NewReader("something else"), want, -1)
	fmt.Println(errors.Is(err, blob.ErrDigestMismatch), s.Has(want, -1))
	// Output:
	// true false
}

// A writer hashes while it writes; Commit publishes the blob atomically.
func ExampleStore_NewWriter() {
	dir, err := os.MkdirTemp("", "blob-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s := blob.New(filepath.Join(dir, "blobs"), filepath.Join(dir, "staging"))

	w, err := s.NewWriter()
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close() // removes the staging file if Commit was not reached
	for i := 0; i < 3; i++ {
		fmt.Fprintf(w, "chunk %d\n", i)
	}
	d, size, err := w.Commit()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Algorithm(), size, s.Has(d, size))
	// Output:
	// sha256 24 true
}
