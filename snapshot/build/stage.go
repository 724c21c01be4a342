package build

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containerd/platforms"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/dockerfile"
	"github.com/strata-oci/strata/layout"
)

// buildStage runs stage i: FROM, its ONBUILD triggers, its instructions.
func (b *builder) buildStage(ctx context.Context, i int) error {
	s := b.f.stages[i]
	st := &stage{idx: i, name: s.Name, args: &args{options: b.options, meta: b.meta, declared: map[string]*string{}}}
	b.stages[i] = st
	if err := b.from(ctx, st, s); err != nil {
		return fmt.Errorf("%s: line %d: %s: %w", b.f.path, line(s.Location), s.SourceCode, err)
	}
	var triggers []string
	if _, err := st.cfg.GetRuntime("OnBuild", &triggers); err != nil {
		return err
	}
	if len(triggers) > 0 {
		// The triggers run now, and the image does not hand them on.
		if err := st.cfg.SetRuntime("OnBuild", nil); err != nil {
			return err
		}
		for _, tr := range triggers {
			cmd, err := parseTrigger(b.f, tr)
			if err != nil {
				return fmt.Errorf("%s: ONBUILD trigger %q of the base image: %w", b.f.path, tr, err)
			}
			b.steps++
			if err := b.dispatch(ctx, st, cmd, "ONBUILD "+tr); err != nil {
				return err
			}
		}
	}
	for _, c := range s.Commands {
		if err := b.dispatch(ctx, st, c, c.(fmt.Stringer).String()); err != nil {
			return err
		}
	}
	st.done = true
	return nil
}

// parseTrigger parses an ONBUILD trigger as one instruction.
func parseTrigger(f *file, tr string) (instructions.Command, error) {
	pf, err := parseBytes(f.path, []byte("FROM scratch\n"+tr+"\n"))
	if err != nil {
		return nil, err
	}
	if len(pf.stages) != 1 || len(pf.stages[0].Commands) != 1 {
		return nil, errors.New("an ONBUILD trigger must be one instruction")
	}
	return pf.stages[0].Commands[0], nil
}

// from starts a stage on its base: scratch, an earlier stage or an
// image.
func (b *builder) from(ctx context.Context, st *stage, s instructions.Stage) error {
	metaEnv := (&args{options: b.options, meta: b.meta}).metaEnv()
	st.platform = b.target
	if s.Platform != "" {
		pv, _, err := b.f.lex.ProcessWord(s.Platform, metaEnv)
		if err != nil {
			return err
		}
		p, err := platforms.Parse(pv)
		if err != nil {
			return fmt.Errorf("--platform %s: %w", pv, err)
		}
		st.platform = platforms.Normalize(p)
	}
	name, _, err := b.f.lex.ProcessWord(s.BaseName, metaEnv)
	if err != nil {
		return err
	}
	if name == "" {
		return fmt.Errorf("base name (%s) should not be blank", s.BaseName)
	}
	b.step++
	start := time.Now()
	b.event(st, s.SourceCode, false, false, 0)
	var img *layout.Image
	switch {
	case strings.EqualFold(name, "scratch"):
		img, err = b.scratch(st.platform)
	default:
		if j, ok := b.f.stageIndex(name, st.idx); ok {
			base := b.stages[j]
			if base == nil || !base.done {
				return fmt.Errorf("stage %q is not built", name)
			}
			img = base.img
			st.key = base.key
		} else {
			img, err = b.image(ctx, name, st.platform)
		}
	}
	if err != nil {
		return err
	}
	if st.key == "" {
		st.key = keyOf("FROM", img.Descriptor.Digest.String())
	}
	if err := b.setImage(st, img); err != nil {
		return err
	}
	// Docker gives a stage's environment a PATH when its image has none.
	var env []string
	if _, err := st.cfg.GetRuntime("Env", &env); err != nil {
		return err
	}
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		if err := st.cfg.SetRuntime("Env", append(env, "PATH="+defaultPath)); err != nil {
			return err
		}
	}
	st.cfgs = dockerfile.NewApplier(st.cfg, b.f.lex)
	b.event(st, s.SourceCode, true, false, time.Since(start))
	return nil
}

// defaultPath is the PATH Docker gives a Linux stage whose image has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// setImage makes img the stage's current image.
func (b *builder) setImage(st *stage, img *layout.Image) error {
	cfg, err := layout.ParseConfig(img.ConfigRaw)
	if err != nil {
		return fmt.Errorf("config %s: %w", img.Manifest.Config.Digest, err)
	}
	st.img, st.cfg = img, cfg
	if st.cfgs != nil {
		st.cfgs.SetConfig(cfg)
	}
	return nil
}

// scratch is an image with no layers for the platform p.
func (b *builder) scratch(p ocispec.Platform) (*layout.Image, error) {
	cfg := layout.NewConfig(p)
	if err := cfg.Set("rootfs", ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}}); err != nil {
		return nil, err
	}
	return b.cache.putImage(cfg, nil)
}
