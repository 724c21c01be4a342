package layout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
)

// ErrInvalidArtifact means an artifact to attach is malformed: no or a
// bad artifact type, a bad media type, a subject that is not an image.
var ErrInvalidArtifact = errors.New("invalid artifact")

// ArtifactFile is one file of an artifact, stored as one layer of its
// manifest.
type ArtifactFile struct {
	// Name is recorded as the layer's org.opencontainers.image.title, as
	// oras records file names: the base name of the file.
	Name string
	// MediaType is the layer's media type; empty means sniffed from
	// Name and the first bytes (SniffFileType).
	MediaType string
	// Open opens the content; it is read once, streaming.
	Open func() (io.ReadCloser, error)
}

// AttachOptions describe an artifact to attach to an image.
type AttachOptions struct {
	// ArtifactType is the manifest's artifactType (required), such as
	// application/spdx+json or application/vnd.example.signature.
	ArtifactType string
	// Annotations go on the manifest.
	Annotations map[string]string
	// Files become the layers, in order. With none the manifest has the
	// one empty layer the image-spec asks for.
	Files []ArtifactFile
	// Created, when not zero, is recorded as the manifest's
	// org.opencontainers.image.created annotation (as oras records it)
	// unless Annotations give one.
	Created time.Time
}

// Attach stores an artifact manifest whose subject is the manifest or
// index subject points at (image-spec 1.1: artifactType, the empty
// config, the files as layers) and records it in index.json as an
// untagged referrer. It returns the artifact's descriptor as the
// referrers API lists it. A failure leaves no blob of the artifact
// behind. Cancelling ctx stops it within a megabyte of a file.
func (l *Layout) Attach(ctx context.Context, subject ocispec.Descriptor, o AttachOptions) (_ ocispec.Descriptor, err error) {
	if err := checkMediaType(o.ArtifactType); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: artifact type: %w", ErrInvalidArtifact, err)
	}
	subject = l.typed(ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size})
	if !IsManifest(subject.MediaType) && !IsIndex(subject.MediaType) {
		return ocispec.Descriptor{}, fmt.Errorf("%w: subject %s is a %q, not a manifest or an index", ErrInvalidArtifact, subject.Digest, subject.MediaType)
	}
	if !l.blobs.Has(subject.Digest, subject.Size) {
		return ocispec.Descriptor{}, fmt.Errorf("attach to %s: %w: the subject is not in layout %s", subject.Digest, ErrRefNotFound, l.dir)
	}
	if err := l.Hold(); err != nil {
		return ocispec.Descriptor{}, err
	}
	added := &Added{}
	defer func() {
		if err != nil {
			_, _ = l.Discard(added)
		}
	}()
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: o.ArtifactType,
		Config:       ocispec.DescriptorEmptyJSON,
		Subject:      &subject,
		Layers:       []ocispec.Descriptor{},
	}
	if err := l.putTracked(ocispec.DescriptorEmptyJSON.Data, added); err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, f := range o.Files {
		d, err := l.putFile(ctx, f, added)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		m.Layers = append(m.Layers, d)
	}
	if len(m.Layers) == 0 {
		m.Layers = append(m.Layers, ocispec.DescriptorEmptyJSON)
	}
	if len(o.Annotations) > 0 || !o.Created.IsZero() {
		m.Annotations = map[string]string{}
		if !o.Created.IsZero() {
			m.Annotations[ocispec.AnnotationCreated] = o.Created.UTC().Format(time.RFC3339)
		}
		for k, v := range o.Annotations {
			m.Annotations[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode artifact manifest: %w", err)
	}
	if err := l.putTracked(b, added); err != nil {
		return ocispec.Descriptor{}, err
	}
	raw := ocispec.Descriptor{MediaType: m.MediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	desc, _, err := ReferrerDescriptor(raw, b)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := l.AddUntagged(desc); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// putTracked stores b, recording it in added when it was not there.
func (l *Layout) putTracked(b []byte, added *Added) error {
	d := digest.FromBytes(b)
	had := l.blobs.Has(d, int64(len(b)))
	if _, err := l.blobs.PutBytes(b); err != nil {
		return err
	}
	if !had {
		added.Add(d)
	}
	return nil
}

// putFile stores one artifact file and returns its layer descriptor.
func (l *Layout) putFile(ctx context.Context, f ArtifactFile, added *Added) (ocispec.Descriptor, error) {
	rc, err := f.Open()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("artifact file %s: %w", f.Name, err)
	}
	defer rc.Close()
	mt := f.MediaType
	var r io.Reader = rc
	if mt == "" {
		head := make([]byte, 4096)
		n, err := io.ReadFull(rc, head)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return ocispec.Descriptor{}, fmt.Errorf("artifact file %s: %w", f.Name, err)
		}
		head = head[:n]
		mt = SniffFileType(f.Name, head)
		r = io.MultiReader(bytes.NewReader(head), rc)
	} else if err := checkMediaType(mt); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: artifact file %s: %w", ErrInvalidArtifact, f.Name, err)
	}
	w, err := l.blobs.NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer w.Close()
	if _, err := w.ReadFrom(ctxio.Reader(ctx, r)); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("artifact file %s: %w", f.Name, err)
	}
	d, size, err := w.Commit()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("artifact file %s: %w", f.Name, err)
	}
	added.Add(d)
	desc := ocispec.Descriptor{MediaType: mt, Digest: d, Size: size}
	if name := filepath.Base(f.Name); f.Name != "" && name != "." && name != "/" {
		desc.Annotations = map[string]string{ocispec.AnnotationTitle: name}
	}
	return desc, nil
}

// checkMediaType checks that mt is a media type: type/subtype, with
// parameters if any.
func checkMediaType(mt string) error {
	if mt == "" {
		return errors.New("empty media type")
	}
	base, _, err := mime.ParseMediaType(mt)
	if err != nil {
		return fmt.Errorf("%q: %v", mt, err)
	}
	if t, sub, ok := strings.Cut(base, "/"); !ok || t == "" || sub == "" {
		return fmt.Errorf("%q is not type/subtype", mt)
	}
	return nil
}

// SniffFileType names the media type of an artifact file from its name
// and first bytes, as SBOM and attestation tools label them: SPDX and
// CycloneDX JSON, in-toto statements and DSSE envelopes, SARIF, other
// JSON, gzip, zstd, tar, text; anything else is
// application/octet-stream.
func SniffFileType(name string, head []byte) string {
	trimmed := bytes.TrimSpace(head)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		s := string(trimmed)
		switch {
		case strings.Contains(s, `"spdxVersion"`):
			return "application/spdx+json"
		case strings.Contains(s, `"bomFormat"`) && strings.Contains(s, `CycloneDX`):
			return "application/vnd.cyclonedx+json"
		case strings.Contains(s, `"payloadType"`) && strings.Contains(s, `"signatures"`):
			return "application/vnd.dsse.envelope.v1+json"
		case strings.Contains(s, `"_type"`) && strings.Contains(s, "in-toto.io/Statement"):
			return "application/vnd.in-toto+json"
		case strings.Contains(s, "sarif"):
			if strings.HasSuffix(strings.ToLower(name), ".sarif") || strings.Contains(s, `"runs"`) {
				return "application/sarif+json"
			}
		}
		if strings.HasSuffix(strings.ToLower(name), ".json") || json.Valid(head) {
			return "application/json"
		}
	}
	switch compression.Detect(head) {
	case compression.Gzip:
		return "application/gzip"
	case compression.Zstd:
		return "application/zstd"
	}
	if len(head) >= 262 && string(head[257:262]) == "ustar" {
		return "application/x-tar"
	}
	if bytes.HasPrefix(trimmed, []byte("SPDXVersion:")) {
		return "text/spdx"
	}
	if isText(head) {
		return "text/plain"
	}
	return "application/octet-stream"
}

// isText reports whether b looks like UTF-8 text: no control bytes but
// white space. A rune cut at the end of b does not count against it.
func isText(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i := 0; i < 3 && len(b) > 0 && !utf8.Valid(b); i++ {
		b = b[:len(b)-1]
	}
	if !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' {
			return false
		}
	}
	return true
}
