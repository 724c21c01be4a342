package layertest

import (
	"strconv"
	"time"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// PlatformImage is one platform's image of a BuildIndex index.
type PlatformImage struct {
	Platform ocispec.Platform
	// Layers are uncompressed tars; they are stored gzip-compressed.
	Layers [][]byte
	// History is the config's history; nil gives one entry per layer,
	// created_by "layer N".
	History []ocispec.History
	Cmd     []string
	Env     []string
	Labels  map[string]string
	// Annotations go on the image's manifest.
	Annotations map[string]string
}

// PutPlatformImage stores img in l and returns its manifest's descriptor,
// with its platform; nothing is named.
func PutPlatformImage(l *layout.Layout, img PlatformImage) (ocispec.Descriptor, error) {
	cfg := layout.NewConfig(img.Platform)
	if err := cfg.Set("created", Epoch.UTC()); err != nil {
		return ocispec.Descriptor{}, err
	}
	var descs []ocispec.Descriptor
	for _, t := range img.Layers {
		d, err := l.PutBytes(ocispec.MediaTypeImageLayerGzip, Gzip(t))
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		descs = append(descs, d)
		if err := cfg.AppendLayer(DiffID(t)); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	hist := img.History
	if hist == nil {
		for i := range img.Layers {
			when := Epoch.Add(time.Duration(i) * time.Hour).UTC()
			hist = append(hist, ocispec.History{Created: &when, CreatedBy: "layer " + strconv.Itoa(i+1)})
		}
	}
	for _, h := range hist {
		if err := cfg.AppendHistory(h); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	for k, v := range map[string]any{"Cmd": img.Cmd, "Env": img.Env, "Labels": img.Labels} {
		switch x := v.(type) {
		case []string:
			if x == nil {
				continue
			}
		case map[string]string:
			if x == nil {
				continue
			}
		}
		if err := cfg.SetRuntime(k, v); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return l.PutImage(cfg, descs, img.Annotations)
}

// BuildIndex writes one image per platform and an OCI index listing them
// with their platforms into the layout at dir (created if needed), tags
// the index tag (unless empty) and returns the index's descriptor and the
// manifests', in order.
func BuildIndex(dir, tag string, imgs ...PlatformImage) (ocispec.Descriptor, []ocispec.Descriptor, error) {
	l, err := layout.Init(dir)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	defer l.Close()
	var ms []ocispec.Descriptor
	for _, img := range imgs {
		md, err := PutPlatformImage(l, img)
		if err != nil {
			return ocispec.Descriptor{}, nil, err
		}
		ms = append(ms, md)
	}
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: ms,
	}
	d, err := l.PutJSON(ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	if tag != "" {
		if err := l.Tag(d, tag); err != nil {
			return ocispec.Descriptor{}, nil, err
		}
	}
	return d, ms, nil
}
