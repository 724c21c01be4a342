package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
)

func TestImport(t *testing.T) {
	tarball := testTar(t, 1000)
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	l := newTestLayout(t)
	res, err := l.Import(context.Background(), bytes.NewReader(compressWith(t, "xz", tarball)), ImportOptions{
		Platform: ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"},
		Created:  &created,
		Author:   "me <me@example.com>",
		Comment:  "first",
		Edit: func(c *Config) error {
			return c.SetRuntime("Cmd", []string{"/bin/sh"})
		},
		Layer: []LayerOption{WithCompression(compression.Zstd)},
		Ref:   "v1",
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := l.Image("v1", &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Descriptor.Digest != res.Manifest.Digest || img.Manifest.Config.Digest != res.Config.Digest {
		t.Fatal("result does not name the tagged image")
	}
	c := img.Config
	if c.Architecture != "arm64" || c.Variant != "v8" || c.OS != "linux" || c.Author != "me <me@example.com>" {
		t.Fatalf("platform/author: %+v", c)
	}
	if c.Created == nil || !c.Created.Equal(created) {
		t.Fatalf("created %v", c.Created)
	}
	if len(c.RootFS.DiffIDs) != 1 || c.RootFS.DiffIDs[0] != digest.FromBytes(tarball) {
		t.Fatalf("diff_ids %v", c.RootFS.DiffIDs)
	}
	if len(c.History) != 1 || c.History[0].Comment != "first" || c.History[0].Author != c.Author || !c.History[0].Created.Equal(created) {
		t.Fatalf("history %+v", c.History)
	}
	if fmt.Sprint(c.Config.Cmd) != "[/bin/sh]" {
		t.Fatalf("cmd %v", c.Config.Cmd)
	}
	if len(img.Manifest.Layers) != 1 || img.Manifest.Layers[0].MediaType != ocispec.MediaTypeImageLayerZstd {
		t.Fatalf("layers %+v", img.Manifest.Layers)
	}
	if probs, err := l.Fsck(context.Background()); err != nil || len(probs) != 0 {
		t.Fatal(probs, err)
	}
}

func TestImportReproducible(t *testing.T) {
	tarball := testTar(t, 5000)
	created, err := ParseCreated("1700000000")
	if err != nil {
		t.Fatal(err)
	}
	var digests []digest.Digest
	for i := 0; i < 2; i++ {
		l := newTestLayout(t)
		// Plain input is compressed by strata, so this also checks that
		// the compressor's output is deterministic.
		res, err := l.Import(context.Background(), bytes.NewReader(tarball), ImportOptions{Created: &created, Comment: "x"})
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, res.Manifest.Digest)
		ents, err := l.List()
		if err != nil || len(ents) != 1 || ents[0].Name != "" {
			t.Fatalf("untagged import listed as %+v, %v", ents, err)
		}
	}
	if digests[0] != digests[1] {
		t.Fatalf("same input and time gave %s and %s", digests[0], digests[1])
	}
}

func TestImportLeavesLayoutUnchanged(t *testing.T) {
	tarball := testTar(t, 1000)
	editErr := errors.New("bad change")
	tests := []struct {
		name  string
		input []byte
		opts  ImportOptions
	}{
		{"not a tar", []byte("hello, this is text\n"), ImportOptions{Ref: "v2"}},
		{"gzip of text", compressWith(t, "gzip", bytes.Repeat([]byte("text "), 1000)), ImportOptions{Ref: "v2"}},
		{"edit fails", tarball, ImportOptions{Ref: "v2", Edit: func(*Config) error { return editErr }}},
		{"digest ref", tarball, ImportOptions{Ref: "@sha256:" + digest.FromString("x").Encoded()}},
		{"bad ref", tarball, ImportOptions{Ref: "a b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLayout(t)
			if _, err := l.Import(context.Background(), bytes.NewReader(tarball), ImportOptions{Ref: "v1"}); err != nil {
				t.Fatal(err)
			}
			idx, err := os.ReadFile(filepath.Join(l.Dir(), IndexFile))
			if err != nil {
				t.Fatal(err)
			}
			blobs := blobList(t, l)
			if _, err := l.Import(context.Background(), bytes.NewReader(tc.input), tc.opts); err == nil {
				t.Fatal("import succeeded")
			}
			idx2, _ := os.ReadFile(filepath.Join(l.Dir(), IndexFile))
			if !bytes.Equal(idx, idx2) {
				t.Fatalf("index.json changed:\n%s\n%s", idx, idx2)
			}
			if got := blobList(t, l); fmt.Sprint(got) != fmt.Sprint(blobs) {
				t.Fatalf("blobs changed: %v -> %v", blobs, got)
			}
			if n := stagingFiles(t, l); n != 0 {
				t.Fatalf("%d staging files left", n)
			}
		})
	}
}

func TestParseCreated(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"0", time.Unix(0, 0).UTC(), true},
		{"1700000000", time.Unix(1700000000, 0).UTC(), true},
		{" 1700000000\n", time.Unix(1700000000, 0).UTC(), true},
		{"2024-01-02T03:04:05Z", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{"2024-01-02T04:04:05+01:00", time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), true},
		{"2024-01-02T03:04:05.5Z", time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC), true},
		{"", time.Time{}, false},
		{"-1", time.Time{}, false},
		{"99999999999999", time.Time{}, false},
		{"yesterday", time.Time{}, false},
		{"2024-01-02", time.Time{}, false},
	}
	for _, tc := range tests {
		got, err := ParseCreated(tc.in)
		if tc.ok != (err == nil) || (tc.ok && !got.Equal(tc.want)) {
			t.Errorf("ParseCreated(%q) = %v, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidTime) {
			t.Errorf("ParseCreated(%q): %v is not ErrInvalidTime", tc.in, err)
		}
	}
}

func FuzzParseCreated(f *testing.F) {
	for _, s := range []string{"0", "1700000000", "2024-01-02T03:04:05Z", "x", "-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseCreated(s)
		if err != nil {
			return
		}
		if tm.Location() != time.UTC {
			t.Fatalf("%q parsed to non-UTC %v", s, tm)
		}
	})
}
