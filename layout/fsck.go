package layout

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Problem is one thing fsck found wrong.
type Problem struct {
	// Where names the place: a blob digest, an index.json entry, or a
	// layer of a manifest.
	Where string `json:"where"`
	Err   string `json:"error"`
	// For a layer FsckOptions.DiffIDs found wrong: the layer blob, the
	// diff_id its config lists and, when it decompressed whole, the one
	// it has.
	Layer    digest.Digest `json:"layer,omitempty"`
	Expected digest.Digest `json:"expected_diff_id,omitempty"`
	Actual   digest.Digest `json:"actual_diff_id,omitempty"`
	// Warning marks what the specs allow but is worth knowing: a
	// referrer whose subject is not in the layout (registries accept a
	// referrer before its subject, and a layout may hold a signature
	// alone). The layout is not damaged by it.
	Warning bool `json:"warning,omitempty"`
}

func (p Problem) String() string {
	if p.Warning {
		return "warning: " + p.Where + ": " + p.Err
	}
	return p.Where + ": " + p.Err
}

// Damaged counts the problems that are not warnings.
func Damaged(problems []Problem) int {
	n := 0
	for _, p := range problems {
		if !p.Warning {
			n++
		}
	}
	return n
}

// FsckOptions say what Fsck checks beyond the blobs and the images'
// structure, and how it reports progress.
type FsckOptions struct {
	// DiffIDs also decompresses every layer of every image index.json
	// reaches and checks it as VerifyOptions.DiffIDs does: one problem
	// per layer of each image that does not decompress whole, is not a
	// tar archive or does not match its config's diff_id.
	DiffIDs bool
	// Progress, when set, is called as each stage starts ("verify blobs",
	// "check diffIDs") with the bytes it will read, and returns a function
	// that is told, from several goroutines, the size of each blob done.
	Progress func(stage string, total int64) func(size int64)
}

// Fsck checks the layout: every blob's content against its digest, that
// every blob reachable from index.json exists with the size its descriptor
// gives, and that every reachable index, manifest and config parses. It
// returns the problems found, sorted; an error means the check itself could
// not run (or ctx was cancelled). Staging files are in-progress writes and
// are not problems.
func (l *Layout) Fsck(ctx context.Context) ([]Problem, error) {
	return l.FsckWith(ctx, FsckOptions{})
}

// The stages FsckOptions.Progress is told about.
const (
	FsckStageBlobs   = "verify blobs"
	FsckStageDiffIDs = "check diffIDs"
)

// problemList collects problems from several goroutines.
type problemList struct {
	mu   sync.Mutex
	list []Problem
}

func (p *problemList) add(where string, err error) {
	p.mu.Lock()
	p.list = append(p.list, Problem{Where: where, Err: err.Error()})
	p.mu.Unlock()
}

// FsckWith is Fsck with options. Cancelling ctx stops it between blobs
// and within a megabyte of the blob being hashed, with ctx's error.
func (l *Layout) FsckWith(ctx context.Context, o FsckOptions) ([]Problem, error) {
	var problems problemList
	present, corrupt, err := l.verifyBlobs(ctx, &problems, o.Progress)
	if err != nil {
		return nil, err
	}
	idx, err := l.Index()
	if err != nil {
		problems.add(IndexFile, err)
		return sortProblems(problems.list), nil
	}
	checked := map[digest.Digest]bool{}
	for i, root := range idx.Manifests {
		where := fmt.Sprintf("%s manifests[%d]", IndexFile, i)
		if n := root.Annotations[AnnotationRefName]; n != "" {
			where += fmt.Sprintf(" (%s)", n)
		}
		l.fsckDesc(root, where, present, corrupt, checked, problems.add, 0)
	}
	if err := l.fsckReferrers(ctx, idx, present, &problems); err != nil {
		return nil, err
	}
	if o.DiffIDs {
		diffProblems, err := l.fsckDiffIDs(ctx, idx, present, corrupt, o.Progress)
		if err != nil {
			return nil, err
		}
		problems.list = append(problems.list, diffProblems...)
	}
	return sortProblems(problems.list), nil
}

// fsckReferrers warns about referrers whose subject is not in the layout.
func (l *Layout) fsckReferrers(ctx context.Context, idx *Index, present map[digest.Digest]int64, problems *problemList) error {
	ri, err := l.ReferrerIndexOf(ctx, idx.Manifests)
	if err != nil {
		return err
	}
	for _, s := range ri.Subjects() {
		if _, ok := present[s]; ok {
			continue
		}
		for _, r := range ri.Of(s, "") {
			where := "referrer " + r.Descriptor.Digest.String()
			why := fmt.Errorf("its subject %s is not in the layout", s)
			if r.Tag != "" {
				where += " (" + r.Tag + ")"
				why = fmt.Errorf("its tag names %s, which is not in the layout", s)
			} else if _, untagged := ri.IsUntaggedReferrer(r.Descriptor.Digest); untagged {
				why = fmt.Errorf("%w; gc removes it, an untagged referrer, unless it is named", why)
			}
			problems.mu.Lock()
			problems.list = append(problems.list, Problem{Where: where, Err: why.Error(), Warning: true})
			problems.mu.Unlock()
		}
	}
	return nil
}

// verifyBlobs hashes every blob's content on all cores and returns the
// blobs present, with their sizes, and those whose content is wrong,
// each of which (and every file of the blob store that is not a blob) is
// added to problems.
func (l *Layout) verifyBlobs(ctx context.Context, problems *problemList, progress func(string, int64) func(int64)) (
	present map[digest.Digest]int64, corrupt map[digest.Digest]bool, _ error) {
	type job struct {
		d    digest.Digest
		size int64
	}
	var all []job
	var total int64
	werr := l.blobs.Walk(func(d digest.Digest, size int64, err error) error {
		if err != nil {
			problems.add("blobs", err)
			return nil
		}
		all = append(all, job{d, size})
		total += size
		return nil
	})
	if werr != nil {
		return nil, nil, werr
	}
	var verified func(int64)
	if progress != nil {
		verified = progress(FsckStageBlobs, total)
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var mu sync.Mutex
	corrupt = map[digest.Digest]bool{}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := l.blobs.Verify(ctx, j.d, j.size)
				if ctx.Err() != nil {
					continue
				}
				if verified != nil {
					verified(j.size)
				}
				if err != nil {
					problems.add("blob "+j.d.String(), unwrapBlob(err, j.d))
					mu.Lock()
					corrupt[j.d] = true
					mu.Unlock()
				}
			}
		}()
	}
	present = map[digest.Digest]int64{}
	for _, j := range all {
		if ctx.Err() != nil {
			break
		}
		present[j.d] = j.size
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	return present, corrupt, nil
}

// fsckDiffIDs checks the layers of every image index.json reaches against
// their configs' diff_ids, with the layer check VerifyImage uses. Images
// whose manifest or config the structural check found wrong are left to
// that check's problems.
func (l *Layout) fsckDiffIDs(ctx context.Context, idx *Index, present map[digest.Digest]int64, corrupt map[digest.Digest]bool,
	progress func(string, int64) func(int64)) ([]Problem, error) {
	manifests, names := l.namedManifests(idx, present, corrupt)
	jobs, total := l.diffIDJobs(manifests, present, corrupt)
	if len(jobs) == 0 {
		return nil, nil
	}
	lc := l.LayerChecker()
	if progress != nil {
		lc.onDone = progress(FsckStageDiffIDs, total)
	}
	var (
		mu  sync.Mutex
		out []Problem
	)
	lc.check(ctx, jobs, func(_ int, e *LayerError) {
		where := fmt.Sprintf("manifest %s", e.Manifest)
		if n := names[e.Manifest]; len(n) > 0 {
			where += " (" + strings.Join(n, ", ") + ")"
		}
		where += fmt.Sprintf(" layer %d %s", e.Index, e.Layer)
		mu.Lock()
		out = append(out, Problem{Where: where, Err: e.Problem(), Layer: e.Layer, Expected: e.DiffID, Actual: e.Actual})
		mu.Unlock()
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// namedManifests lists the image manifests index.json reaches (through
// nested indexes too) that are present and whole, each once, with the
// names that reach each.
func (l *Layout) namedManifests(idx *Index, present map[digest.Digest]int64, corrupt map[digest.Digest]bool) ([]digest.Digest, map[digest.Digest][]string) {
	names := map[digest.Digest][]string{}
	var manifests []digest.Digest
	var visit func(d ocispec.Descriptor, name string, depth int)
	visit = func(d ocispec.Descriptor, name string, depth int) {
		if depth > 16 || corrupt[d.Digest] || present[d.Digest] != d.Size || d.Digest.Validate() != nil {
			return
		}
		d = l.typed(d)
		switch {
		case IsManifest(d.MediaType):
			if _, seen := names[d.Digest]; !seen {
				manifests = append(manifests, d.Digest)
				names[d.Digest] = []string{}
			}
			if name != "" && !slices.Contains(names[d.Digest], name) {
				names[d.Digest] = append(names[d.Digest], name)
			}
		case IsIndex(d.MediaType):
			b, err := l.ReadBlob(d, MaxManifestSize)
			if err != nil {
				return
			}
			children, err := childrenOf(d, b)
			if err != nil {
				return
			}
			for _, c := range children {
				visit(c, name, depth+1)
			}
		}
	}
	for _, root := range idx.Manifests {
		visit(root, root.Annotations[AnnotationRefName], 0)
	}
	return manifests, names
}

// diffIDJobs lists the layers of manifests to check against their
// diff_ids, leaving out those of images the structural check finds wrong
// and layers that are missing or corrupt (reported as such), and the
// bytes of the distinct layer blobs among them.
func (l *Layout) diffIDJobs(manifests []digest.Digest, present map[digest.Digest]int64, corrupt map[digest.Digest]bool) ([]layerJob, int64) {
	sizes := map[digest.Digest]int64{}
	var jobs []layerJob
	for _, md := range manifests {
		b, err := l.ReadBlob(ocispec.Descriptor{Digest: md, Size: present[md]}, MaxManifestSize)
		if err != nil {
			continue
		}
		m, err := ParseManifest(b)
		if err != nil || corrupt[m.Config.Digest] {
			continue
		}
		diffIDs, ok, err := l.diffIDsOf(md, m)
		if err != nil || !ok {
			continue // reported by the structural check
		}
		for _, j := range layerJobs(md, m, diffIDs) {
			if corrupt[j.layer.Digest] || present[j.layer.Digest] != j.layer.Size {
				continue // reported as a bad or missing blob
			}
			sizes[j.layer.Digest] = j.layer.Size
			jobs = append(jobs, j)
		}
	}
	var total int64
	for _, n := range sizes {
		total += n
	}
	return jobs, total
}

func (l *Layout) fsckDesc(d ocispec.Descriptor, where string, present map[digest.Digest]int64,
	corrupt, checked map[digest.Digest]bool, add func(string, error), depth int) {
	if depth > 16 {
		add(where, fmt.Errorf("descriptors nested too deeply"))
		return
	}
	if err := d.Digest.Validate(); err != nil {
		add(where, fmt.Errorf("invalid digest %q: %v", d.Digest, err))
		return
	}
	size, ok := present[d.Digest]
	switch {
	case !ok:
		add(where, fmt.Errorf("blob %s is missing", d.Digest))
		return
	case size != d.Size:
		add(where, fmt.Errorf("blob %s has %d bytes, descriptor says %d", d.Digest, size, d.Size))
		return
	case corrupt[d.Digest]:
		return // already reported by the content check
	}
	if checked[d.Digest] {
		return
	}
	checked[d.Digest] = true
	d = l.typed(d)
	if !IsIndex(d.MediaType) && !IsManifest(d.MediaType) {
		if IsConfig(d.MediaType) {
			b, err := l.ReadBlob(d, MaxConfigSize)
			if err == nil {
				_, err = ParseImageConfig(b)
			}
			if err != nil {
				add("config "+d.Digest.String(), err)
			}
		}
		return
	}
	b, err := l.ReadBlob(d, MaxManifestSize)
	if err != nil {
		add(where, err)
		return
	}
	children, err := childrenOf(d, b)
	if err != nil {
		add(where, err)
		return
	}
	kind := "manifest"
	if IsIndex(d.MediaType) {
		kind = "index"
	}
	for i, c := range children {
		l.fsckDesc(c, fmt.Sprintf("%s %s child %d", kind, d.Digest, i), present, corrupt, checked, add, depth+1)
	}
	if IsManifest(d.MediaType) {
		m, _ := ParseManifest(b)
		if IsConfig(m.Config.MediaType) && !corrupt[m.Config.Digest] {
			if cb, err := l.ReadBlob(m.Config, MaxConfigSize); err == nil {
				if c, err := ParseImageConfig(cb); err == nil && len(c.RootFS.DiffIDs) != len(m.Layers) {
					add("manifest "+d.Digest.String(), fmt.Errorf("has %d layers but its config lists %d diff_ids", len(m.Layers), len(c.RootFS.DiffIDs)))
				}
			}
		}
	}
}

// unwrapBlob drops the "blob <digest>: " prefix the blob package adds, as
// the problem's place already names the blob.
func unwrapBlob(err error, d digest.Digest) error {
	s := err.Error()
	p := "blob " + d.String() + ": "
	if len(s) > len(p) && s[:len(p)] == p {
		return fmt.Errorf("%s", s[len(p):])
	}
	return err
}

func sortProblems(p []Problem) []Problem {
	sort.Slice(p, func(i, j int) bool {
		if p[i].Where != p[j].Where {
			return p[i].Where < p[j].Where
		}
		return p[i].Err < p[j].Err
	})
	return p
}
