// Package build builds images from a Containerfile (Dockerfile), with
// Docker's semantics, into OCI image layouts: no daemon.
//
// The Containerfile is read by BuildKit's parser, instructions and shell
// packages, the code Docker itself reads it with; the build runs the
// instructions as Docker's builder does: every RUN, COPY, ADD and
// WORKDIR step is one layer made by strata's commit
// (snapshot/bundle.Unpack, then Commit after the step changed the
// bundle's rootfs), every other instruction changes only the config and
// records an empty_layer history entry.
//
// Each step's result is an image in the build cache, a layout in the
// snapshot store (ROOT/build/cache), named by the step's cache key: the
// parent's key, the instruction as expanded, the build args it sees and,
// for COPY and ADD, the digest of the files it reads. An unchanged
// rebuild finds every step there and writes only its outputs.
package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout/remote"
	"github.com/strata-oci/strata/snapshot"
)

// Containerfiles are the files looked for in the context when Options
// name none, in order.
var Containerfiles = []string{"Containerfile", "Dockerfile"}

// ErrNoContainerfile means the context holds no Containerfile or
// Dockerfile, and none was named.
var ErrNoContainerfile = errors.New("no Containerfile or Dockerfile")

// ErrInstruction wraps the failure of one instruction: the error names
// the Containerfile and its line.
var ErrInstruction = errors.New("build step failed")

// ErrRunFailed means a RUN command exited with a status other than 0
// (see RunError).
var ErrRunFailed = errors.New("RUN command failed")

// RunError is a RUN step whose command exited non-zero.
type RunError struct {
	Command []string
	Code    int
}

func (e *RunError) Error() string {
	return fmt.Sprintf("the command %q returned a non-zero code: %d", e.Command, e.Code)
}

func (e *RunError) Unwrap() error { return ErrRunFailed }

// Options describe one build.
type Options struct {
	// Context is the build context directory.
	Context string
	// Containerfile is the Containerfile's path; empty: Containerfile,
	// else Dockerfile, in Context.
	Containerfile string
	// BuildArgs are --build-arg values; a nil value takes the variable
	// from Env (docker build --build-arg NAME).
	BuildArgs map[string]*string
	// Env is where --build-arg NAME (no value) comes from.
	Env []string
	// Target is the stage to build; empty: the last.
	Target string
	// Platform is the target platform (FROM images are selected for it,
	// TARGETPLATFORM and friends say it); nil: this machine's.
	Platform *ocispec.Platform
	// NoCache builds every step again (its results still go into the
	// cache, as Docker does).
	NoCache bool
	// Driver is the snapshot driver of the steps' bundles: "vfs" (the
	// default) or "overlay".
	Driver string
	// OnFallback, when set, lets a build that asked for overlay use vfs
	// where overlay does not work (see bundle.UnpackOptions).
	OnFallback func(reason error)
	// Timestamp, when set, is every history entry's and the image's
	// creation time and caps the mtimes of every layer's files: the same
	// context gives the same image digest on every machine.
	Timestamp *time.Time
	// Secrets are what RUN --mount=type=secret asks for, by id. Their
	// contents never reach a layer, a config, a history entry or a cache
	// key.
	Secrets map[string]Secret
	// Tags are LAYOUT:REF names for the image (REF may list several
	// names separated by commas); a LAYOUT alone adds it untagged.
	Tags []string
	// Outputs are transport names the image is copied to
	// (docker-archive:FILE:NAME:TAG, oci-archive:FILE, oci:DIR:REF,
	// docker://REG/REPO:TAG), as strata copy takes them.
	Outputs []string
	// CacheFrom are layouts or registry images (transport names) a
	// CacheTo of another build wrote: their steps are used as the store's
	// own cache is.
	CacheFrom []string
	// CacheTo are where the cache of this build's steps is written, as
	// one image index of every step's image.
	CacheTo []string
	// Registry options for FROM images, outputs and caches on registries.
	Registry []remote.Option
	// Store is the snapshot store: bundles' snapshots, and the build
	// cache in ROOT/build.
	Store *snapshot.Store
	// Network is RUN's network: "host" (the default) or "none".
	Network string
	// Stdout and Stderr receive RUN's output (nil: discarded).
	Stdout, Stderr io.Writer
	// Progress, when set, is told of every step.
	Progress func(Event)
	// Run runs a RUN step's command in a bundle (nil: the one of
	// snapshot/run). Tests and embedders replace it.
	Run Runner
}

// Secret is a secret's content: the file File, else Data.
type Secret struct {
	File string
	Data []byte
}

// Event is a step starting or ending.
type Event struct {
	// Stage is the stage's index, from 0, and StageName its name.
	Stage     int
	StageName string
	// Step counts the steps of the whole build from 1; Steps is how many
	// there are (ONBUILD triggers add to it as they are found).
	Step, Steps int
	// Instruction is the step as written, variables unexpanded.
	Instruction string
	// Done is false when the step starts, true when it ended.
	Done bool
	// Cached says the step's result came from the cache.
	Cached bool
	// Took is how long the step took.
	Took time.Duration
}

// Result is what Build made.
type Result struct {
	// Manifest is the image's manifest, in the build cache layout and in
	// every Tags layout.
	Manifest ocispec.Descriptor
	// Config is the image config's digest: docker's image ID.
	Config digest.Digest
	// Steps counts the steps run, Cached those found in the cache.
	Steps, Cached int
	// Cache is the build cache layout's directory.
	Cache string
}

// Dirs under the store's root.
const (
	// BuildDir holds everything of builds in the store.
	BuildDir = "build"
	// CacheLayout is the layout of every step's image.
	CacheLayout = "cache"
	// MountsDir holds RUN --mount=type=cache directories, by id.
	MountsDir = "mounts"
	// workPrefix names a build's working directory (its bundles),
	// flock-held while it runs.
	workPrefix = "work-"
)

// CacheDir is the build cache layout of the store at root.
func CacheDir(root string) string { return filepath.Join(root, BuildDir, CacheLayout) }

// Build builds the image Options describe and returns it.
func Build(ctx context.Context, o Options) (*Result, error) {
	b, err := newBuilder(o)
	if err != nil {
		return nil, err
	}
	res, err := b.build(ctx)
	if cerr := b.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// findContainerfile returns the Containerfile Options name, or the
// context's.
func findContainerfile(o Options) (string, error) {
	if o.Containerfile != "" {
		if _, err := os.Stat(o.Containerfile); err != nil {
			return "", fmt.Errorf("containerfile: %w", err)
		}
		return o.Containerfile, nil
	}
	for _, n := range Containerfiles {
		p := filepath.Join(o.Context, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w in %s", ErrNoContainerfile, o.Context)
}
