package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/layout"
)

// epoch is the timestamp of every entry: archives must not depend on when
// they were written.
var epoch = time.Unix(0, 0).UTC()

// Write writes imgs, whose blobs are all in l, to w as an archive of format
// f. Each image is recorded under each of its names. A docker-archive needs
// one manifest per image (select a platform out of an index first) and
// gzip or uncompressed layers. w receives the archive as it is produced;
// on error what was written is incomplete and must be discarded.
// Cancelling ctx stops the write between blobs and within a megabyte of
// one, with ctx's error.
func Write(ctx context.Context, w io.Writer, l *layout.Layout, f Format, imgs []Image) error {
	return WriteWith(ctx, w, l, f, imgs, WriteOptions{})
}

// WriteOptions change what Write puts in an archive.
type WriteOptions struct {
	// Since makes a delta bundle: blobs it lists are left out, except
	// indexes, manifests and image configs, which are small and which a
	// reader needs whole to know what the images are. Read completes the
	// rest from the layout it reads into (ReadOptions.Partial); other
	// tools cannot read such an archive.
	Since *layout.Inventory
}

// Omitted says whether a blob is left out of a delta bundle made with o.
func (o WriteOptions) Omitted(d ocispec.Descriptor) bool {
	if o.Since == nil || layout.IsIndex(d.MediaType) || layout.IsManifest(d.MediaType) || layout.IsConfig(d.MediaType) {
		return false
	}
	return o.Since.Has(d.Digest, d.Size)
}

// WriteWith is Write with options.
func WriteWith(ctx context.Context, w io.Writer, l *layout.Layout, f Format, imgs []Image, o WriteOptions) error {
	newFormat, ok := formats[f]
	if !ok {
		return fmt.Errorf("archive format %q: use %s or %s", f, Docker, OCI)
	}
	fw := newFormat()
	blobs, idx, err := plan(l, fw, imgs)
	if err != nil {
		return err
	}
	own, err := fw.files()
	if err != nil {
		return err
	}
	for d, desc := range blobs {
		if o.Omitted(desc) {
			delete(blobs, d)
		}
	}
	tw := tar.NewWriter(ctxio.Writer(ctx, w))
	if err := writeBlobs(ctx, tw, l, blobs); err != nil {
		return err
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index.json: %w", err)
	}
	lb, _ := json.Marshal(map[string]string{"imageLayoutVersion": layout.LayoutVersion})
	// After the blobs: index.json, the format's files with oci-layout
	// among them, in the order Docker 25 writes them.
	files := append([]archiveFile{{"index.json", ib}}, own.beforeMarker...)
	files = append(files, archiveFile{"oci-layout", lb})
	for _, af := range append(files, own.afterMarker...) {
		if err := writeFile(tw, af.name, af.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}
	return nil
}

// archiveFile is a small file of an archive, written whole.
type archiveFile struct {
	name string
	data []byte
}

// formatFiles are the files a format adds to the OCI layout every
// written archive holds, before and after its oci-layout entry.
type formatFiles struct {
	beforeMarker, afterMarker []archiveFile
}

// formatWriter is what one archive format does beyond the OCI layout.
type formatWriter interface {
	// fullName is the full name index.json records for name n, or ""
	// when n is recorded as a ref.name alone.
	fullName(n string) string
	// add records image d with its names; a format that cannot hold it
	// says so here, before anything is written.
	add(l *layout.Layout, d ocispec.Descriptor, names []string) error
	// files are the format's own files, once every image is added.
	files() (formatFiles, error)
}

// formats makes the writer of each format.
var formats = map[Format]func() formatWriter{
	OCI:    func() formatWriter { return ociFormat{} },
	Docker: func() formatWriter { return &dockerFormat{repos: map[string]map[string]string{}} },
}

// ociFormat is an oci-archive: the OCI layout alone. A bare tag (v1) is a
// ref.name alone, as skopeo writes oci-archive:FILE:v1.
type ociFormat struct{}

func (ociFormat) fullName(n string) string {
	if layout.IsBareTag(n) {
		return ""
	}
	return fullName(n)
}

func (ociFormat) add(*layout.Layout, ocispec.Descriptor, []string) error { return nil }

func (ociFormat) files() (formatFiles, error) { return formatFiles{}, nil }

// dockerFormat is a docker-archive: the OCI layout plus manifest.json and
// repositories, as docker save writes them.
type dockerFormat struct {
	entries []dockerEntry
	repos   map[string]map[string]string // repository -> tag -> config hex
}

func (*dockerFormat) fullName(n string) string { return fullName(n) }

func (df *dockerFormat) add(l *layout.Layout, d ocispec.Descriptor, names []string) error {
	e, err := dockerEntryFor(l, d, names)
	if err != nil {
		return err
	}
	df.entries = append(df.entries, e)
	for _, t := range e.RepoTags {
		named, err := reference.ParseNormalizedNamed(t)
		if err != nil {
			continue
		}
		tagged, ok := named.(reference.NamedTagged)
		if !ok {
			continue
		}
		repo := reference.FamiliarName(named)
		if df.repos[repo] == nil {
			df.repos[repo] = map[string]string{}
		}
		df.repos[repo][tagged.Tag()] = path.Base(e.Config)
	}
	return nil
}

func (df *dockerFormat) files() (formatFiles, error) {
	mb, err := json.Marshal(df.entries)
	if err != nil {
		return formatFiles{}, fmt.Errorf("encode manifest.json: %w", err)
	}
	// encoding/json sorts map keys: the file is deterministic.
	rb, err := json.Marshal(df.repos)
	if err != nil {
		return formatFiles{}, fmt.Errorf("encode repositories: %w", err)
	}
	return formatFiles{
		beforeMarker: []archiveFile{{"manifest.json", mb}},
		afterMarker:  []archiveFile{{"repositories", rb}},
	}, nil
}

// plan finds the blobs of every image and the archive's index.json, and
// tells fw about each image.
func plan(l *layout.Layout, fw formatWriter, imgs []Image) (map[digest.Digest]ocispec.Descriptor, ocispec.Index, error) {
	blobs := map[digest.Digest]ocispec.Descriptor{}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
	for _, img := range imgs {
		d := img.Descriptor
		d.Annotations = nil
		for k, v := range img.Descriptor.Annotations {
			// Names come from img.Names alone.
			if k != layout.AnnotationRefName && k != layout.AnnotationImageName {
				if d.Annotations == nil {
					d.Annotations = map[string]string{}
				}
				d.Annotations[k] = v
			}
		}
		err := l.Walk(d, func(c ocispec.Descriptor, _ []byte) error {
			blobs[c.Digest] = c
			return nil
		})
		if err != nil {
			return nil, idx, fmt.Errorf("read image %s: %w", d.Digest, err)
		}
		if len(img.Names) == 0 {
			idx.Manifests = append(idx.Manifests, d)
		}
		for _, n := range img.Names {
			idx.Manifests = append(idx.Manifests, indexEntry(d, n, fw.fullName(n)))
		}
		if err := fw.add(l, d, img.Names); err != nil {
			return nil, idx, err
		}
		if err := planReferrers(l, fw, img, blobs, &idx); err != nil {
			return nil, idx, err
		}
	}
	return blobs, idx, nil
}

// planReferrers adds the blobs of img's referrers and their entries in
// the OCI layout part: untagged, or for cosign's a name in each of the
// image's repositories (a bare tag when it has none). The format's own
// files (manifest.json) do not list them: they are no images to load.
func planReferrers(l *layout.Layout, fw formatWriter, img Image, blobs map[digest.Digest]ocispec.Descriptor, idx *ocispec.Index) error {
	has := func(e ocispec.Descriptor) bool {
		for _, m := range idx.Manifests {
			if m.Digest == e.Digest && m.Annotations[layout.AnnotationRefName] == e.Annotations[layout.AnnotationRefName] &&
				m.Annotations[layout.AnnotationImageName] == e.Annotations[layout.AnnotationImageName] {
				return true
			}
		}
		return false
	}
	for _, r := range img.Referrers {
		d := r.Descriptor
		err := l.Walk(d, func(c ocispec.Descriptor, _ []byte) error {
			blobs[c.Digest] = c
			return nil
		})
		if err != nil {
			return fmt.Errorf("read referrer %s of %s: %w", d.Digest, r.Subject, err)
		}
		if r.Tag == "" {
			d.Annotations = withoutNames(d.Annotations)
			if !has(d) {
				idx.Manifests = append(idx.Manifests, d)
			}
			continue
		}
		plain := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: d.ArtifactType}
		for _, n := range layout.CosignNames(img.Names, r.Tag) {
			full := ""
			if !layout.IsBareTag(n) {
				full = fw.fullName(n)
			}
			if e := indexEntry(plain, n, full); !has(e) {
				idx.Manifests = append(idx.Manifests, e)
			}
		}
	}
	return nil
}

// withoutNames drops the name annotations of an index.json entry.
func withoutNames(a map[string]string) map[string]string {
	var out map[string]string
	for k, v := range a {
		if k == layout.AnnotationRefName || k == layout.AnnotationImageName {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// writeBlobs writes blobs/ and every blob, sorted by digest, checking ctx
// between blobs.
func writeBlobs(ctx context.Context, tw *tar.Writer, l *layout.Layout, blobs map[digest.Digest]ocispec.Descriptor) error {
	digests := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, d)
	}
	sort.Slice(digests, func(i, j int) bool { return digests[i] < digests[j] })
	if err := writeDir(tw, "blobs/"); err != nil {
		return err
	}
	lastAlg := ""
	for _, d := range digests {
		if err := ctx.Err(); err != nil {
			return err
		}
		if alg := d.Algorithm().String(); alg != lastAlg {
			if err := writeDir(tw, "blobs/"+alg+"/"); err != nil {
				return err
			}
			lastAlg = alg
		}
		if err := writeBlob(tw, l, blobs[d]); err != nil {
			return err
		}
	}
	return nil
}

// dockerEntryFor builds the manifest.json element of one image.
func dockerEntryFor(l *layout.Layout, d ocispec.Descriptor, names []string) (dockerEntry, error) {
	if !layout.IsManifest(d.MediaType) {
		return dockerEntry{}, fmt.Errorf("image %s: %w: it is an index (%s); choose a platform", d.Digest, ErrNotDockerCompatible, d.MediaType)
	}
	img, err := l.ReadImage(d)
	if err != nil {
		return dockerEntry{}, err
	}
	e := dockerEntry{Config: blobPath(img.Manifest.Config.Digest), RepoTags: []string{}}
	for _, ly := range img.Manifest.Layers {
		switch ly.MediaType {
		case ocispec.MediaTypeImageLayerZstd, layout.MediaTypeDockerLayerZstd:
			return dockerEntry{}, fmt.Errorf("image %s: layer %s: %w: %w (they do not load in docker 20.10)", d.Digest, ly.Digest, ErrNotDockerCompatible, layout.ErrZstdDocker)
		}
		if ly.MediaType == layout.MediaTypeDockerForeignLayer && len(ly.URLs) > 0 {
			return dockerEntry{}, fmt.Errorf("image %s: layer %s: %w: it is a foreign layer, fetched from %s by its users", d.Digest, ly.Digest, ErrNotDockerCompatible, ly.URLs[0])
		}
		if !layout.IsLayer(ly.MediaType) {
			return dockerEntry{}, fmt.Errorf("image %s: layer %s: %w: media type %q is not a filesystem layer", d.Digest, ly.Digest, ErrNotDockerCompatible, ly.MediaType)
		}
		e.Layers = append(e.Layers, blobPath(ly.Digest))
	}
	if e.Layers == nil {
		e.Layers = []string{}
	}
	seen := map[string]bool{}
	for _, n := range names {
		if t := DockerTag(n); t != "" && !seen[t] {
			seen[t] = true
			e.RepoTags = append(e.RepoTags, t)
		}
	}
	return e, nil
}

// indexEntry is d named n in an archive's index.json, written as Docker 25
// and containerd write it: the full name in io.containerd.image.name
// (which containerd, Docker 25+ and podman load an image by) and only its
// tag in ref.name. With no full name (see formatWriter.fullName) n is a
// ref.name alone, so ctr names it import-DATE:n.
func indexEntry(d ocispec.Descriptor, n, full string) ocispec.Descriptor {
	nd := d
	nd.Annotations = map[string]string{}
	for k, v := range d.Annotations {
		nd.Annotations[k] = v
	}
	if full == "" {
		nd.Annotations[layout.AnnotationRefName] = n
		return nd
	}
	nd.Annotations[layout.AnnotationImageName] = full
	nd.Annotations[layout.AnnotationRefName] = full
	if named, err := reference.ParseNormalizedNamed(full); err == nil {
		if t, ok := named.(reference.Tagged); ok {
			nd.Annotations[layout.AnnotationRefName] = t.Tag()
		}
	}
	return nd
}

// fullName is the fully qualified docker.io/library/x:tag form of a name,
// or "" for names that are not image references.
func fullName(n string) string {
	if DockerTag(n) == "" {
		return ""
	}
	named, err := reference.ParseNormalizedNamed(n)
	if err != nil {
		return ""
	}
	return reference.TagNameOnly(named).String()
}

func blobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

func header(name string, typ byte, mode, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ, Name: name, Mode: mode, Size: size,
		ModTime: epoch,
	}
}

func writeDir(tw *tar.Writer, name string) error {
	if err := tw.WriteHeader(header(name, tar.TypeDir, 0o755, 0)); err != nil {
		return fmt.Errorf("write archive entry %s: %w", name, err)
	}
	return nil
}

func writeFile(tw *tar.Writer, name string, b []byte) error {
	if err := tw.WriteHeader(header(name, tar.TypeReg, 0o644, int64(len(b)))); err != nil {
		return fmt.Errorf("write archive entry %s: %w", name, err)
	}
	if _, err := tw.Write(b); err != nil {
		return fmt.Errorf("write archive entry %s: %w", name, err)
	}
	return nil
}

// writeBlob streams one blob through a verifying reader into the archive.
func writeBlob(tw *tar.Writer, l *layout.Layout, d ocispec.Descriptor) error {
	r, err := l.Blobs().Open(d.Digest, d.Size)
	if err != nil {
		return fmt.Errorf("archive blob %s: %w", d.Digest, err)
	}
	defer r.Close()
	name := blobPath(d.Digest)
	if err := tw.WriteHeader(header(name, tar.TypeReg, 0o644, r.Size())); err != nil {
		return fmt.Errorf("write archive entry %s: %w", name, err)
	}
	if _, err := r.WriteTo(tw); err != nil {
		return fmt.Errorf("archive blob %s: %w", d.Digest, err)
	}
	return nil
}
