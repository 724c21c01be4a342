package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"reflect"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
)

// ErrInvalidSetting means a KEY=VALUE setting is malformed.
var ErrInvalidSetting = errors.New("invalid setting")

// Setting is one change of a set of labels, environment variables or
// annotations: KEY set to Value, or KEY removed.
type Setting struct {
	Key, Value string
	Remove     bool
}

// ParseSetting reads KEY=VALUE, or KEY- to remove KEY (as buildah config
// writes it). VALUE may be empty; KEY may not.
func ParseSetting(s string) (Setting, error) {
	k, v, ok := strings.Cut(s, "=")
	switch {
	case ok && k != "":
		return Setting{Key: k, Value: v}, nil
	case !ok && len(s) > 1 && strings.HasSuffix(s, "-"):
		return Setting{Key: strings.TrimSuffix(s, "-"), Remove: true}, nil
	}
	return Setting{}, fmt.Errorf("%w %q: use KEY=VALUE, or KEY- to remove KEY", ErrInvalidSetting, s)
}

// Changes are the edits Mutate makes to each image: to its config, in
// the order of the fields, and to its manifest's annotations.
type Changes struct {
	// Dockerfile instructions (CMD, ENTRYPOINT, ENV, LABEL, USER, ...)
	// applied with Docker's rules, as import and commit apply --change.
	Dockerfile []string
	// Entrypoint and Cmd, when set, replace the config's. An Entrypoint
	// without a Cmd clears Cmd, as Docker does.
	Entrypoint, Cmd *[]string
	// Env sets or removes environment variables: a variable set keeps its
	// place, a new one goes last. Values are taken as they are, without
	// variable expansion.
	Env []Setting
	// Labels sets or removes config labels.
	Labels []Setting
	// User and WorkingDir, when set, replace the config's; a relative
	// WorkingDir is taken from the current one, as WORKDIR does.
	User, WorkingDir *string
	// Created, when set, is the config's new creation time; else it is
	// kept, so the same changes give the same digest.
	Created *time.Time
	// Annotations are set on or removed from each image manifest.
	Annotations []Setting
	// IndexAnnotations are set on or removed from the top index; an image
	// that is a single manifest has none (ErrNotIndex).
	IndexAnnotations []Setting
}

// Check finds what is wrong with ch before anything is read or written:
// a Dockerfile instruction that does not parse or may not change a
// config, an empty key, an empty WorkingDir.
func (ch Changes) Check() error {
	if err := dockerfile.Apply(layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"}), ch.Dockerfile); err != nil {
		return err
	}
	for _, set := range [][]Setting{ch.Env, ch.Labels, ch.Annotations, ch.IndexAnnotations} {
		for _, s := range set {
			if s.Key == "" {
				return fmt.Errorf("%w: empty key", ErrInvalidSetting)
			}
		}
	}
	for _, s := range ch.Env {
		if strings.Contains(s.Key, "=") {
			return fmt.Errorf("%w: environment variable name %q has a '='", ErrInvalidSetting, s.Key)
		}
	}
	if ch.WorkingDir != nil && *ch.WorkingDir == "" {
		return fmt.Errorf("%w: empty working directory", ErrInvalidSetting)
	}
	return nil
}

// Mutate applies ch to every image root reaches whose platform is one of
// platforms (every image when none), each image getting a new config and
// manifest, and rewrites the indexes on the way. Layers are neither read
// nor written. An image the changes leave as it was keeps its digest.
// Nothing is named; see Rewrite.
func Mutate(ctx context.Context, l *layout.Layout, root ocispec.Descriptor, ch Changes, platforms []ocispec.Platform) (*Result, error) {
	if err := ch.Check(); err != nil {
		return nil, err
	}
	opts := RewriteOptions{Platforms: platforms}
	if len(ch.IndexAnnotations) > 0 {
		opts.Index = func(idx *layout.Index) error {
			idx.Annotations = EditAnnotations(idx.Annotations, ch.IndexAnnotations)
			return nil
		}
	}
	return Rewrite(ctx, l, root, opts, func(_ context.Context, img *layout.Image, _ ocispec.Platform) (ocispec.Descriptor, error) {
		cfg, err := layout.ParseConfig(img.ConfigRaw)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
		}
		if err := ch.Apply(cfg); err != nil {
			return ocispec.Descriptor{}, err
		}
		b, err := cfg.Bytes()
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		// Config.Bytes writes keys sorted: a config whose content did
		// not change keeps its own bytes, and so its digest.
		if sameJSON(b, img.ConfigRaw) {
			b = img.ConfigRaw
		}
		ann := EditAnnotations(img.Manifest.Annotations, ch.Annotations)
		if bytes.Equal(b, img.ConfigRaw) && maps.Equal(ann, img.Manifest.Annotations) {
			return img.Descriptor, nil
		}
		return PutImage(l, img, b, img.Manifest.Layers, ann)
	})
}

// changesConfig says whether ch edits configs at all.
func (ch Changes) changesConfig() bool {
	return len(ch.Dockerfile) > 0 || ch.Entrypoint != nil || ch.Cmd != nil || len(ch.Env) > 0 ||
		len(ch.Labels) > 0 || ch.User != nil || ch.WorkingDir != nil || ch.Created != nil
}

// Runtime config fields Mutate edits directly.
const (
	fieldCmd        = "Cmd"
	fieldEntrypoint = "Entrypoint"
	fieldEnv        = "Env"
	fieldLabels     = "Labels"
	fieldUser       = "User"
	fieldWorkingDir = "WorkingDir"
)

// Apply makes ch's config edits on cfg (annotations are not the
// config's: Mutate makes those). On error cfg may be partly changed.
func (ch Changes) Apply(cfg *layout.Config) error {
	if !ch.changesConfig() {
		return nil
	}
	if err := dockerfile.Apply(cfg, ch.Dockerfile); err != nil {
		return err
	}
	if ch.Entrypoint != nil {
		if err := cfg.SetRuntime(fieldEntrypoint, argv(*ch.Entrypoint)); err != nil {
			return err
		}
		if ch.Cmd == nil {
			if err := cfg.SetRuntime(fieldCmd, nil); err != nil {
				return err
			}
		}
	}
	if ch.Cmd != nil {
		if err := cfg.SetRuntime(fieldCmd, argv(*ch.Cmd)); err != nil {
			return err
		}
	}
	if len(ch.Env) > 0 {
		var env []string
		if _, err := cfg.GetRuntime(fieldEnv, &env); err != nil {
			return err
		}
		if err := cfg.SetRuntime(fieldEnv, editEnv(env, ch.Env)); err != nil {
			return err
		}
	}
	if len(ch.Labels) > 0 {
		labels := map[string]string{}
		if _, err := cfg.GetRuntime(fieldLabels, &labels); err != nil {
			return err
		}
		labels = EditAnnotations(labels, ch.Labels)
		var v any
		if len(labels) > 0 {
			v = labels
		}
		if err := cfg.SetRuntime(fieldLabels, v); err != nil {
			return err
		}
	}
	if ch.User != nil {
		if err := cfg.SetRuntime(fieldUser, *ch.User); err != nil {
			return err
		}
	}
	if ch.WorkingDir != nil {
		wd := *ch.WorkingDir
		if !path.IsAbs(wd) {
			var cur string
			if _, err := cfg.GetRuntime(fieldWorkingDir, &cur); err != nil {
				return err
			}
			wd = path.Join("/", cur, wd)
		}
		if err := cfg.SetRuntime(fieldWorkingDir, path.Clean(wd)); err != nil {
			return err
		}
	}
	if ch.Created != nil {
		if err := cfg.Set("created", ch.Created.UTC()); err != nil {
			return err
		}
	}
	return nil
}

// sameJSON says whether a and b hold the same JSON value.
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// argv is a command as a config holds it: never null.
func argv(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

// editEnv sets or removes variables of env: a variable set again keeps
// its place, a new one goes last.
func editEnv(env []string, edits []Setting) []string {
	out := append([]string(nil), env...)
	for _, e := range edits {
		at := -1
		for i, kv := range out {
			if k, _, _ := strings.Cut(kv, "="); k == e.Key {
				at = i
				break
			}
		}
		switch {
		case e.Remove && at >= 0:
			out = append(out[:at], out[at+1:]...)
		case e.Remove:
		case at >= 0:
			out[at] = e.Key + "=" + e.Value
		default:
			out = append(out, e.Key+"="+e.Value)
		}
	}
	return out
}
