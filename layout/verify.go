package layout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
	"github.com/strata-oci/strata/internal/ctxio"
)

// Errors VerifyImage reports with; LayerError wraps them too.
var (
	// ErrInvalidImage means an image is not whole or not consistent: a
	// blob is missing or has another size, an index, manifest or config
	// does not parse or is over its size limit, a config does not list
	// one diff_id per layer, or a layer does not match its diff_id.
	ErrInvalidImage = errors.New("invalid image")
	// ErrDiffIDMismatch means a layer's uncompressed content does not
	// hash to the diff_id its config lists for it.
	ErrDiffIDMismatch = errors.New("layer does not match its diff_id")
)

// LayerError is a layer of an image that does not match its config: it
// does not decompress whole, is not a tar archive, or hashes to another
// diffID than the config's. errors.Is finds ErrInvalidImage and the cause
// (ErrDiffIDMismatch, ErrNotTar, a decompression or blob error) in it.
type LayerError struct {
	Manifest digest.Digest // the image manifest
	Index    int           // the layer's position in the manifest
	Layer    digest.Digest // the layer blob
	DiffID   digest.Digest // what the config's rootfs.diff_ids says
	Actual   digest.Digest // what the layer decompressed to; empty when it could not be read whole
	Err      error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("layer %d (%s) of manifest %s: %s", e.Index, e.Layer, e.Manifest, e.Problem())
}

// Problem says what is wrong with the layer, without naming it.
func (e *LayerError) Problem() string {
	if e.Actual != "" {
		return fmt.Sprintf("uncompressed content is %s, config says diff_id %s", e.Actual, e.DiffID)
	}
	return fmt.Sprintf("%v (config says diff_id %s)", e.Err, e.DiffID)
}

func (e *LayerError) Unwrap() []error { return []error{ErrInvalidImage, e.Err} }

// VerifyOptions say how deep VerifyImage looks.
type VerifyOptions struct {
	// DiffIDs also decompresses every layer and checks that it is one
	// whole tar archive whose digest is the diff_id its config lists, as
	// unpack would find. Without it layers are only checked present.
	DiffIDs bool
	// Layers, when set, remembers layers already decompressed (by an
	// earlier VerifyImage or by LayerChecker.DiffID), so that a layer
	// several images share is read once. It must be of the same layout.
	Layers *LayerChecker
}

// VerifyImage checks that the image desc points at (a manifest, or an
// index with everything it lists) is whole and consistent in l: every
// blob it reaches is present with its descriptor's size, every index and
// manifest parses, and every image config is within MaxConfigSize,
// parses and lists one diff_id per layer; with o.DiffIDs, every layer
// matches its diff_id too (see LayerChecker.DiffID). Manifests of other
// artifacts (configs of other media types) are checked for their blobs
// only. It returns the first problem found, wrapping ErrInvalidImage
// (a *LayerError for a layer), or ctx's error.
//
// Every reader of images from outside (archives of every dialect, other
// layouts, registries) checks what it read with VerifyImage, and
// `strata fsck --diffids` checks a whole layout with the same layer check.
func (l *Layout) VerifyImage(ctx context.Context, desc ocispec.Descriptor, o VerifyOptions) error {
	var manifests []ocispec.Descriptor
	contents := map[digest.Digest][]byte{}
	err := l.Walk(desc, func(d ocispec.Descriptor, b []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !l.blobs.Has(d.Digest, d.Size) {
			return fmt.Errorf("%s %s (%d bytes) is missing or has another size", kindOf(d.MediaType), d.Digest, d.Size)
		}
		if IsManifest(d.MediaType) {
			if _, seen := contents[d.Digest]; !seen {
				contents[d.Digest] = b
				manifests = append(manifests, d)
			}
		}
		return nil
	})
	if err != nil {
		return invalid(ctx, desc, err)
	}
	var jobs []layerJob
	for _, md := range manifests {
		m, err := ParseManifest(contents[md.Digest])
		if err != nil {
			return invalid(ctx, desc, fmt.Errorf("manifest %s: %w", md.Digest, err))
		}
		diffIDs, ok, err := l.diffIDsOf(md.Digest, m)
		if err != nil {
			return invalid(ctx, desc, err)
		}
		if ok && o.DiffIDs {
			jobs = append(jobs, layerJobs(md.Digest, m, diffIDs)...)
		}
	}
	if len(jobs) == 0 {
		return nil
	}
	lc := o.Layers
	if lc == nil {
		lc = l.LayerChecker()
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first *LayerError
		pos   int
	)
	lc.check(cctx, jobs, func(i int, e *LayerError) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil || i < pos {
			first, pos = e, i
		}
		cancel()
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	if first != nil {
		return first
	}
	return nil
}

// invalid wraps an error of VerifyImage's walk as ErrInvalidImage, unless
// it is ctx's.
func invalid(ctx context.Context, desc ocispec.Descriptor, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w %s: %w", ErrInvalidImage, desc.Digest, err)
}

// diffIDsOf reads and checks the config of manifest m: within
// MaxConfigSize, parsing, one diff_id per layer. ok is false for a
// manifest whose config is not an image config (an artifact).
func (l *Layout) diffIDsOf(md digest.Digest, m *ocispec.Manifest) (_ []digest.Digest, ok bool, _ error) {
	if !IsConfig(m.Config.MediaType) {
		return nil, false, nil
	}
	cb, err := l.ReadBlob(m.Config, MaxConfigSize)
	if err != nil {
		return nil, false, fmt.Errorf("config %s of manifest %s: %w", m.Config.Digest, md, err)
	}
	c, err := ParseImageConfig(cb)
	if err != nil {
		return nil, false, fmt.Errorf("config %s of manifest %s: %w", m.Config.Digest, md, err)
	}
	if len(c.RootFS.DiffIDs) != len(m.Layers) {
		return nil, false, fmt.Errorf("manifest %s has %d layers but its config %s lists %d diff_ids", md, len(m.Layers), m.Config.Digest, len(c.RootFS.DiffIDs))
	}
	return c.RootFS.DiffIDs, true, nil
}

// layerJob is one layer to check against its diff_id.
type layerJob struct {
	manifest digest.Digest
	index    int
	layer    ocispec.Descriptor
	diffID   digest.Digest
}

// layerJobs lists the layers of m to check: filesystem layers. Foreign
// layers, which a layout need not hold, and blobs of other media types
// (an artifact's payload under an image config, such as a cosign
// signature's) are left out.
func layerJobs(md digest.Digest, m *ocispec.Manifest, diffIDs []digest.Digest) []layerJob {
	var out []layerJob
	for i, ly := range m.Layers {
		if !IsLayer(ly.MediaType) || (len(ly.URLs) > 0 && ly.MediaType == MediaTypeDockerForeignLayer) {
			continue
		}
		out = append(out, layerJob{manifest: md, index: i, layer: ly, diffID: diffIDs[i]})
	}
	return out
}

// LayerChecker decompresses and hashes the layers of one layout, each
// blob once however many images list it. It is safe for concurrent use.
type LayerChecker struct {
	l  *Layout
	mu sync.Mutex
	m  map[layerKey]*layerResult
	// onDone, when set, is told the size of each blob once decompressed.
	onDone func(size int64)
}

type layerKey struct {
	d   digest.Digest
	alg digest.Algorithm
}

type layerResult struct {
	done   chan struct{}
	diffID digest.Digest
	err    error
}

// LayerChecker returns an empty LayerChecker for l.
func (l *Layout) LayerChecker() *LayerChecker {
	return &LayerChecker{l: l, m: map[layerKey]*layerResult{}}
}

// DiffID decompresses layer d (its compression sniffed from its first
// bytes, as unpack does), checks that it is one whole tar archive, and
// returns the digest, with alg, of the uncompressed stream: the layer's
// diffID. Every byte of the blob is verified against d. A blob already
// checked gives its result again without being read.
func (c *LayerChecker) DiffID(ctx context.Context, d ocispec.Descriptor, alg digest.Algorithm) (digest.Digest, error) {
	k := layerKey{d.Digest, alg}
	c.mu.Lock()
	r, ok := c.m[k]
	if !ok {
		r = &layerResult{done: make(chan struct{})}
		c.m[k] = r
	}
	c.mu.Unlock()
	if ok {
		select {
		case <-r.done:
			return r.diffID, r.err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	r.diffID, r.err = c.l.layerDiffID(ctx, d, alg)
	if r.err != nil && ctx.Err() != nil {
		// Cancelled, not checked: the next caller reads it again.
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
	} else if c.onDone != nil {
		c.onDone(d.Size)
	}
	close(r.done)
	return r.diffID, r.err
}

func (l *Layout) layerDiffID(ctx context.Context, d ocispec.Descriptor, alg digest.Algorithm) (digest.Digest, error) {
	if !alg.Available() {
		return "", fmt.Errorf("diff_id algorithm %q is not supported", alg)
	}
	r, err := l.blobs.Open(d.Digest, d.Size)
	if err != nil {
		return "", err
	}
	defer r.Close()
	dr, kind, err := compression.NewSniffingReader(ctxio.Reader(ctx, r))
	if err != nil {
		return "", fmt.Errorf("decompress: %w", err)
	}
	defer dr.Close()
	h := alg.Hash()
	if _, err := consumeTar(io.TeeReader(dr, h), readTar); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return "", cerr
		}
		if errors.Is(err, ErrNotTar) || kind == compression.None {
			return "", err
		}
		return "", fmt.Errorf("decompress %s: %w", kind, err)
	}
	return digest.NewDigest(alg, h), nil
}

// check runs jobs on all cores and calls bad, from several goroutines,
// with the position and error of each layer that does not match.
func (c *LayerChecker) check(ctx context.Context, jobs []layerJob, bad func(int, *LayerError)) {
	// Each blob's first job goes first, its repeats last: by then the
	// blob is checked and the repeats only compare, instead of a worker
	// waiting for another to finish the same blob.
	order := make([]int, 0, len(jobs))
	var repeats []int
	seen := map[digest.Digest]bool{}
	for i, j := range jobs {
		if seen[j.layer.Digest] {
			repeats = append(repeats, i)
			continue
		}
		seen[j.layer.Digest] = true
		order = append(order, i)
	}
	order = append(order, repeats...)
	next := make(chan int)
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				j := jobs[i]
				got, err := c.DiffID(ctx, j.layer, j.diffID.Algorithm())
				if ctx.Err() != nil {
					continue
				}
				e := &LayerError{Manifest: j.manifest, Index: j.index, Layer: j.layer.Digest, DiffID: j.diffID}
				switch {
				case err != nil:
					e.Err = err
				case got != j.diffID:
					e.Actual, e.Err = got, ErrDiffIDMismatch
				default:
					continue
				}
				bad(i, e)
			}
		}()
	}
	for _, i := range order {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}
