package layout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Config is an image config held as raw JSON. Edits change only the fields
// they name, so fields strata does not model (Healthcheck, OnBuild, fields
// of future spec versions) survive every edit.
type Config struct {
	top map[string]json.RawMessage
	run map[string]json.RawMessage // the "config" object
	// runEdited says whether run changed: if not, "config" keeps its bytes.
	runEdited bool
}

// ParseConfig parses raw image config JSON for editing.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(b, &c.top); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	if c.top == nil {
		return nil, fmt.Errorf("parse config: not a JSON object")
	}
	if raw, ok := c.top["config"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &c.run); err != nil {
			return nil, fmt.Errorf("parse config: config: %w", err)
		}
	}
	if c.run == nil {
		c.run = map[string]json.RawMessage{}
	}
	return c, nil
}

// NewConfig starts an empty config for os/arch[/variant].
func NewConfig(p ocispec.Platform) *Config {
	c := &Config{top: map[string]json.RawMessage{}, run: map[string]json.RawMessage{}}
	_ = c.Set("architecture", p.Architecture)
	_ = c.Set("os", p.OS)
	if p.Variant != "" {
		_ = c.Set("variant", p.Variant)
	}
	_ = c.Set("rootfs", ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}})
	return c
}

// Get decodes top-level field key into v and reports whether it was set.
func (c *Config) Get(key string, v any) (bool, error) { return get(c.top, key, v) }

// Set encodes v into top-level field key; a nil v removes the field.
func (c *Config) Set(key string, v any) error { return set(c.top, key, v) }

// GetRuntime decodes field key of the "config" object (Cmd, Env, ...).
func (c *Config) GetRuntime(key string, v any) (bool, error) { return get(c.run, key, v) }

// SetRuntime encodes v into field key of the "config" object; a nil v
// removes the field.
func (c *Config) SetRuntime(key string, v any) error {
	c.runEdited = true
	return set(c.run, key, v)
}

func get(m map[string]json.RawMessage, key string, v any) (bool, error) {
	raw, ok := m[key]
	if !ok || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("config field %s: %w", key, err)
	}
	return true, nil
}

func set(m map[string]json.RawMessage, key string, v any) error {
	if v == nil {
		delete(m, key)
		return nil
	}
	b, err := marshal(v)
	if err != nil {
		return fmt.Errorf("config field %s: %w", key, err)
	}
	m[key] = b
	return nil
}

// marshal is json.Marshal without HTML escaping: a value read from a
// config and written back keeps its "&", "<" and ">" as they were.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// encodeObject writes m as a JSON object, keys sorted, each value's bytes
// as they are: json.Marshal would compact and HTML-escape values that no
// edit touched, changing the config's bytes (and digest) for nothing.
// Values are valid JSON: they were parsed, or made by marshal.
func encodeObject(m map[string]json.RawMessage) ([]byte, error) {
	keys := make([]string, 0, len(m))
	n := 2
	for k, v := range m {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	sort.Strings(keys)
	b := bytes.NewBuffer(make([]byte, 0, n))
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(m[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// DiffIDs returns rootfs.diff_ids.
func (c *Config) DiffIDs() ([]digest.Digest, error) {
	var r ocispec.RootFS
	if _, err := c.Get("rootfs", &r); err != nil {
		return nil, err
	}
	return r.DiffIDs, nil
}

// AppendLayer adds a layer's diffID to rootfs.diff_ids.
func (c *Config) AppendLayer(diffID digest.Digest) error {
	var r ocispec.RootFS
	if _, err := c.Get("rootfs", &r); err != nil {
		return err
	}
	r.Type = "layers"
	r.DiffIDs = append(r.DiffIDs, diffID)
	return c.Set("rootfs", r)
}

// AppendHistory adds an entry to history.
func (c *Config) AppendHistory(h ocispec.History) error {
	var hs []json.RawMessage
	if _, err := c.Get("history", &hs); err != nil {
		return err
	}
	b, err := marshal(h)
	if err != nil {
		return err
	}
	hs = append(hs, b)
	return c.Set("history", hs)
}

// Bytes encodes the config. Keys are written in sorted order, so equal
// configs give equal bytes; fields no edit touched keep their bytes.
func (c *Config) Bytes() ([]byte, error) {
	top := make(map[string]json.RawMessage, len(c.top)+1)
	for k, v := range c.top {
		top[k] = v
	}
	if _, had := c.top["config"]; (had && c.runEdited) || (!had && len(c.run) > 0) {
		b, err := encodeObject(c.run)
		if err != nil {
			return nil, err
		}
		top["config"] = b
	}
	return encodeObject(top)
}

// Image returns the typed view of the config.
func (c *Config) Image() (*ocispec.Image, error) {
	b, err := c.Bytes()
	if err != nil {
		return nil, err
	}
	return ParseImageConfig(b)
}

// PutImage stores cfg and an OCI manifest listing layers (blobs already in
// the layout, in order) and returns the manifest's descriptor, carrying the
// config's platform. The image is not named; see Tag and AddUntagged.
func (l *Layout) PutImage(cfg *Config, layers []ocispec.Descriptor, annotations map[string]string) (ocispec.Descriptor, error) {
	cb, err := cfg.Bytes()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("encode config: %w", err)
	}
	img, err := ParseImageConfig(cb)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	if len(img.RootFS.DiffIDs) != len(layers) {
		return ocispec.Descriptor{}, fmt.Errorf("config lists %d diff_ids for %d layers", len(img.RootFS.DiffIDs), len(layers))
	}
	for _, ly := range layers {
		if !l.blobs.Has(ly.Digest, ly.Size) {
			return ocispec.Descriptor{}, fmt.Errorf("layer %s is not in the layout", ly.Digest)
		}
	}
	cd, err := l.PutBytes(ocispec.MediaTypeImageConfig, cb)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store config: %w", err)
	}
	if layers == nil {
		layers = []ocispec.Descriptor{}
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      cd,
		Layers:      layers,
		Annotations: annotations,
	}
	md, err := l.PutJSON(ocispec.MediaTypeImageManifest, m)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	md.Platform = &ocispec.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant}
	return md, nil
}
