package archive

// Reading the docker-archive of Docker before 1.10, which has neither
// manifest.json nor index.json: a `repositories` file naming top layer IDs
// and, per v1 layer, <id>/VERSION, <id>/json (the v1 image JSON with its
// parent link) and <id>/layer.tar. Each image is rebuilt from its chain of
// v1 layers the way docker load did it, as a Docker schema2 image like the
// ones the manifest.json reader produces.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/layout"
)

// Names of the files of a pre-1.10 archive.
const (
	legacyRepositories = "repositories"
	legacyJSON         = "json"
	legacyLayer        = "layer.tar"
)

// legacyConfigMinVersion is the first Docker version whose v1 JSON is taken
// whole into the config; older ones are cut down to the fields of the v1
// image, as docker load does, because they may carry stray fields.
const legacyConfigMinVersion = "1.8.3"

// v1Fields are the fields of a v1 image JSON, which the config of an image
// written by an old Docker keeps.
var v1Fields = map[string]bool{
	"id": true, "parent": true, "comment": true, "created": true, "container": true,
	"container_config": true, "docker_version": true, "author": true, "config": true,
	"architecture": true, "variant": true, "os": true, "Size": true,
}

// v1Only are the fields of a v1 image JSON that describe the v1 layer, not
// the image, and so have no place in its config.
var v1Only = []string{"id", "parent", "Size", "parent_id", "layer_id", "throwaway"}

// isLegacy reports whether the archive looks like a pre-1.10 one: it has a
// repositories file or a v1 layer JSON.
func (a *scanned) isLegacy() bool {
	if a.has(legacyRepositories) {
		return true
	}
	for name := range a.files {
		if id, file, ok := strings.Cut(name, "/"); ok && file == legacyJSON && validV1ID(id) {
			return true
		}
	}
	return false
}

// has reports whether name is a file or a link of the archive.
func (a *scanned) has(name string) bool {
	_, f := a.files[name]
	_, l := a.links[name]
	return f || l
}

// validV1ID reports whether id is a v1 layer ID: 64 lower-case hex digits,
// which also keeps it from naming anything outside its own directory.
func validV1ID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// v1Layer is one layer of a pre-1.10 archive, from its <id>/json.
type v1Layer struct {
	id     string
	parent string
	raw    []byte // the JSON as it is in the archive
	hist   ocispec.History
	// layer is the layer.tar blob; nil when the layer has none (or an
	// empty file), which makes it an empty layer of the history.
	layer *entry
}

// v1Image holds the fields of a v1 image JSON the reader uses. Field names
// match case-insensitively, as in Docker, which decoded them the same way.
type v1Image struct {
	ID              string     `json:"id"`
	Parent          string     `json:"parent"`
	ParentID        string     `json:"parent_id"`
	Created         *time.Time `json:"created"`
	Author          string     `json:"author"`
	Comment         string     `json:"comment"`
	ContainerConfig *struct {
		Cmd v1Cmd `json:"Cmd"`
	} `json:"container_config"`
}

// v1Cmd is a command of a v1 container config: a list, or one string,
// as Docker's own type accepted both.
type v1Cmd []string

func (c *v1Cmd) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = v1Cmd{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*c = l
	return nil
}

// legacyLayerInfo is what one layer.tar blob gives an image.
type legacyLayerInfo struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
}

// legacyReader builds the images of one pre-1.10 archive.
type legacyReader struct {
	ctx    context.Context
	a      *scanned
	tmp    *layout.Layout
	check  *layout.LayerChecker              // works out diffIDs, and Read's check reuses them
	layers map[string]*v1Layer               // by ID, parsed on first use
	blobs  map[digest.Digest]legacyLayerInfo // by layer.tar digest
	images map[string]ocispec.Descriptor     // by top layer ID
}

// legacyImages works out the images of a pre-1.10 archive: one per top
// layer ID that repositories names, then one, unnamed, per other layer
// that no layer has as parent (docker load took every layer of the
// archive). Manifests and configs are stored in tmp.
func (a *scanned) legacyImages(ctx context.Context, tmp *layout.Layout, check *layout.LayerChecker) ([]Image, error) {
	lr := &legacyReader{ctx: ctx, a: a, tmp: tmp, check: check, layers: map[string]*v1Layer{},
		blobs: map[digest.Digest]legacyLayerInfo{}, images: map[string]ocispec.Descriptor{}}
	named, err := lr.repositories()
	if err != nil {
		return nil, err
	}
	var out []Image
	pos := map[string]int{}
	for _, n := range named {
		d, err := lr.image(n.id)
		if err != nil {
			return nil, fmt.Errorf("image %s (layer %s): %w", n.name, n.id, err)
		}
		i, ok := pos[n.id]
		if !ok {
			i = len(out)
			pos[n.id] = i
			out = append(out, Image{Descriptor: d})
		}
		out[i].Names = append(out[i].Names, dockerName(n.name))
	}
	leaves, err := lr.leaves()
	if err != nil {
		return nil, err
	}
	for _, id := range leaves {
		if _, ok := pos[id]; ok {
			continue
		}
		d, err := lr.image(id)
		if err != nil {
			return nil, fmt.Errorf("image of layer %s: %w", id, err)
		}
		out = append(out, Image{Descriptor: d})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: legacy archive: %s names no image and no layer has a %s", ErrInvalidArchive, legacyRepositories, legacyJSON)
	}
	if len(out) > maxDockerImg {
		return nil, fmt.Errorf("%w: legacy archive holds %d images, limit %d", ErrInvalidArchive, len(out), maxDockerImg)
	}
	return out, nil
}

// legacyName is one name of repositories and the top layer it names.
type legacyName struct {
	name, id string
}

// repositories reads the repositories file, {"NAME":{"TAG":"ID"}}, into
// names sorted by name and tag (the order docker wrote them in). An
// archive without the file has no names.
func (lr *legacyReader) repositories() ([]legacyName, error) {
	if !lr.a.has(legacyRepositories) {
		return nil, nil
	}
	e, err := lr.a.lookup(legacyRepositories)
	if err != nil {
		return nil, err
	}
	b, err := lr.tmp.Blobs().ReadAll(e.d, e.size, maxJSONFile)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", legacyRepositories, err)
	}
	var repos map[string]map[string]string
	if err := json.Unmarshal(b, &repos); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidArchive, legacyRepositories, err)
	}
	var out []legacyName
	for repo, tags := range repos {
		named, err := reference.ParseNormalizedNamed(repo)
		if err != nil || !reference.IsNameOnly(named) {
			return nil, fmt.Errorf("%w: %s: %q is not an image name", ErrInvalidArchive, legacyRepositories, repo)
		}
		for tag, id := range tags {
			tagged, err := reference.WithTag(named, tag)
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %s: %q is not a tag", ErrInvalidArchive, legacyRepositories, repo, tag)
			}
			name := reference.FamiliarString(tagged)
			if !validV1ID(id) {
				return nil, fmt.Errorf("%w: %s: %s names layer %q, which is not a layer ID (64 hex digits)", ErrInvalidArchive, legacyRepositories, name, id)
			}
			if !lr.a.has(id + "/" + legacyJSON) {
				return nil, fmt.Errorf("%w: %s: %s names layer %s, which is not in the archive", ErrInvalidArchive, legacyRepositories, name, id)
			}
			out = append(out, legacyName{name: name, id: id})
		}
	}
	if len(out) > maxDockerImg {
		return nil, fmt.Errorf("%w: %s lists %d names, limit %d", ErrInvalidArchive, legacyRepositories, len(out), maxDockerImg)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// leaves returns the IDs of the archive's layers that are no layer's
// parent, sorted. Every layer JSON is read and checked on the way, as
// docker load read every layer.
func (lr *legacyReader) leaves() ([]string, error) {
	var ids []string
	for name := range lr.a.files {
		if id, file, ok := strings.Cut(name, "/"); ok && file == legacyJSON && validV1ID(id) {
			ids = append(ids, id)
		}
	}
	for name := range lr.a.links {
		if id, file, ok := strings.Cut(name, "/"); ok && file == legacyJSON && validV1ID(id) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	parents := map[string]bool{}
	for _, id := range ids {
		l, err := lr.layer(id)
		if err != nil {
			return nil, err
		}
		parents[l.parent] = true
	}
	var out []string
	for _, id := range ids {
		if !parents[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// layer reads and checks the JSON of layer id, and finds its layer.tar.
func (lr *legacyReader) layer(id string) (*v1Layer, error) {
	if l, ok := lr.layers[id]; ok {
		return l, nil
	}
	if !validV1ID(id) {
		return nil, fmt.Errorf("%w: layer ID %q is not 64 hex digits", ErrInvalidArchive, id)
	}
	jsonName := id + "/" + legacyJSON
	if _, isLink := lr.a.links[jsonName]; isLink {
		return nil, fmt.Errorf("%w: %s is a link", ErrUnsafeEntry, jsonName)
	}
	e, ok := lr.a.files[jsonName]
	if !ok {
		return nil, fmt.Errorf("%w: layer %s is not in the archive (no %s)", ErrInvalidArchive, id, jsonName)
	}
	// The v1 JSON becomes the image config: the configs' limit holds.
	raw, err := lr.tmp.Blobs().ReadAll(e.d, e.size, layout.MaxConfigSize)
	if errors.Is(err, blob.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidArchive, jsonName, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", jsonName, err)
	}
	var v v1Image
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidArchive, jsonName, err)
	}
	if v.ID != "" && v.ID != id {
		return nil, fmt.Errorf("%w: %s says it is layer %q", ErrInvalidArchive, jsonName, v.ID)
	}
	parent := v.Parent
	if parent == "" && v.ParentID != "" {
		// Docker 1.9 wrote the parent as a digest in parent_id only.
		pd, err := digest.Parse(v.ParentID)
		if err != nil || pd.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("%w: %s: parent_id %q is not a sha256 digest", ErrInvalidArchive, jsonName, v.ParentID)
		}
		parent = pd.Encoded()
	}
	if parent != "" && !validV1ID(parent) {
		return nil, fmt.Errorf("%w: %s: parent %q is not a layer ID (64 hex digits)", ErrInvalidArchive, jsonName, parent)
	}
	l := &v1Layer{id: id, parent: parent, raw: raw}
	l.hist = ocispec.History{Created: v.Created, Author: v.Author, Comment: v.Comment}
	if v.ContainerConfig != nil {
		l.hist.CreatedBy = strings.Join(v.ContainerConfig.Cmd, " ")
	}
	if l.layer, err = lr.layerTar(id); err != nil {
		return nil, err
	}
	l.hist.EmptyLayer = l.layer == nil
	lr.layers[id] = l
	return l, nil
}

// layerTar finds the layer.tar of layer id. Docker saved a layer that
// appears twice once, and made the other layer.tar a symbolic link to it;
// a link to anything but another layer.tar is refused.
func (lr *legacyReader) layerTar(id string) (*entry, error) {
	name := id + "/" + legacyLayer
	for hops := 0; hops <= maxLinkHops; hops++ {
		if e, ok := lr.a.files[name]; ok {
			if e.size == 0 {
				return nil, nil
			}
			return &e, nil
		}
		t, ok := lr.a.links[name]
		if !ok {
			if hops == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("%w: %s/%s is a link to %s, which is not in the archive", ErrInvalidArchive, id, legacyLayer, name)
		}
		if tid, file, ok := strings.Cut(t, "/"); !ok || file != legacyLayer || !validV1ID(tid) {
			return nil, fmt.Errorf("%w: %s/%s is a link to %s, which is not another layer's %s", ErrUnsafeEntry, id, legacyLayer, t, legacyLayer)
		}
		name = t
	}
	return nil, fmt.Errorf("%w: %s/%s: too many levels of links", ErrInvalidArchive, id, legacyLayer)
}

// chain returns the layers from the base to top, following parent links.
func (lr *legacyReader) chain(top string) ([]*v1Layer, error) {
	var rev []*v1Layer
	seen := map[string]bool{}
	for id, child := top, ""; id != ""; {
		if seen[id] {
			return nil, fmt.Errorf("%w: layer %s: the parent chain loops back to layer %s", ErrInvalidArchive, child, id)
		}
		seen[id] = true
		if len(rev) >= maxLayers {
			return nil, fmt.Errorf("%w: layer %s: more than %d layers", ErrInvalidArchive, top, maxLayers)
		}
		if child != "" && !lr.a.has(id+"/"+legacyJSON) {
			return nil, fmt.Errorf("%w: layer %s: parent %s is not in the archive", ErrInvalidArchive, child, id)
		}
		l, err := lr.layer(id)
		if err != nil {
			return nil, err
		}
		rev = append(rev, l)
		child, id = id, l.parent
	}
	out := make([]*v1Layer, len(rev))
	for i, l := range rev {
		out[len(rev)-1-i] = l
	}
	return out, nil
}

// image builds (once) the image whose top layer is top, and returns its
// manifest's descriptor.
func (lr *legacyReader) image(top string) (ocispec.Descriptor, error) {
	if d, ok := lr.images[top]; ok {
		return d, nil
	}
	chain, err := lr.chain(top)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var (
		layers  = []ocispec.Descriptor{}
		diffIDs = []digest.Digest{}
		history = make([]ocispec.History, 0, len(chain))
	)
	for _, l := range chain {
		history = append(history, l.hist)
		if l.layer == nil {
			continue
		}
		info, err := lr.layerInfo(*l.layer)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s: %s: %w", l.id, legacyLayer, err)
		}
		layers = append(layers, info.desc)
		diffIDs = append(diffIDs, info.diffID)
	}
	cb, err := legacyConfig(chain[len(chain)-1], diffIDs, history)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfg, err := layout.ParseImageConfig(cb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("%w: layer %s: %s does not make an image config: %v", ErrInvalidArchive, top, legacyJSON, err)
	}
	cd, err := lr.tmp.PutBytes(layout.MediaTypeDockerConfig, cb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store config: %w", err)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: layout.MediaTypeDockerManifest,
		Config:    ocispec.Descriptor{MediaType: layout.MediaTypeDockerConfig, Digest: cd.Digest, Size: cd.Size},
		Layers:    layers,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode manifest: %w", err)
	}
	d, err := lr.tmp.PutBytes(layout.MediaTypeDockerManifest, mb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	d.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
	lr.images[top] = d
	return d, nil
}

// legacyConfig makes the image config of a chain whose top layer is top:
// top's JSON without the v1 layer fields, with rootfs and history.
func legacyConfig(top *v1Layer, diffIDs []digest.Digest, history []ocispec.History) ([]byte, error) {
	var c map[string]json.RawMessage
	if err := json.Unmarshal(top.raw, &c); err != nil || c == nil {
		return nil, fmt.Errorf("%w: %s/%s is not a JSON object", ErrInvalidArchive, top.id, legacyJSON)
	}
	var ver string
	if raw, ok := c["docker_version"]; ok {
		_ = json.Unmarshal(raw, &ver)
	}
	if versionLess(ver, legacyConfigMinVersion) {
		for k := range c {
			if !v1Fields[k] {
				delete(c, k)
			}
		}
	}
	for _, k := range v1Only {
		delete(c, k)
	}
	// A config needs a platform; Docker before 1.10 ran linux/amd64
	// images only, and some of its JSON says nothing.
	// A value that is there but not a string is left for the config
	// check to refuse.
	for k, def := range map[string]string{"os": "linux", "architecture": "amd64"} {
		var s *string
		if raw, ok := c[k]; ok && json.Unmarshal(raw, &s) != nil {
			continue
		}
		if s == nil || *s == "" {
			c[k], _ = json.Marshal(def)
		}
	}
	var err error
	if c["rootfs"], err = json.Marshal(ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}); err != nil {
		return nil, err
	}
	if c["history"], err = json.Marshal(history); err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// versionLess compares dotted versions number by number, as Docker did
// (a part that is not a number counts as 0, so "" is older than all).
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// layerInfo works out (once per blob) a layer.tar's diffID and media type.
// layer.tar is plain tar, its own diffID; docker load also took gzip,
// zstd, xz and bzip2 ones: gzip and zstd are kept as they are, the others
// stored uncompressed, as images cannot carry them. The diffID comes from
// the layer check every archive's images go through (decompressed whole,
// a tar archive), which remembers it for Read's check of the image.
func (lr *legacyReader) layerInfo(e entry) (legacyLayerInfo, error) {
	if info, ok := lr.blobs[e.d]; ok {
		return info, nil
	}
	info, err := lr.readLayer(e)
	if err != nil {
		return legacyLayerInfo{}, err
	}
	lr.blobs[e.d] = info
	return info, nil
}

func (lr *legacyReader) readLayer(e entry) (legacyLayerInfo, error) {
	kind, err := layerCompression(lr.tmp.Blobs(), e)
	if err != nil {
		return legacyLayerInfo{}, err
	}
	desc := ocispec.Descriptor{Digest: e.d, Size: e.size}
	switch kind {
	case compression.None, compression.Gzip, compression.Zstd:
		if desc.MediaType, err = dockerLayerType(kind); err != nil {
			return legacyLayerInfo{}, err
		}
	default:
		r, err := lr.tmp.Blobs().Open(e.d, e.size)
		if err != nil {
			return legacyLayerInfo{}, err
		}
		defer r.Close()
		ly, err := lr.tmp.PutLayer(lr.ctx, r, layout.WithCompression(compression.None), layout.WithTarCheck())
		if err != nil {
			return legacyLayerInfo{}, fmt.Errorf("%w: decompress %s: %w", ErrInvalidArchive, kind, err)
		}
		desc = ly.Descriptor
		desc.MediaType = layout.MediaTypeDockerLayer
	}
	diffID, err := lr.check.DiffID(lr.ctx, desc, digest.SHA256)
	if err != nil {
		if lr.ctx.Err() != nil {
			return legacyLayerInfo{}, err
		}
		return legacyLayerInfo{}, fmt.Errorf("%w: %w", ErrInvalidArchive, err)
	}
	return legacyLayerInfo{desc: desc, diffID: diffID}, nil
}
