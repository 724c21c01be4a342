package layout

import (
	"fmt"
	"runtime"
	"sort"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Problem is one thing fsck found wrong.
type Problem struct {
	// Where names the place: a blob digest or an index.json entry.
	Where string `json:"where"`
	Err   string `json:"error"`
}

func (p Problem) String() string { return p.Where + ": " + p.Err }

// Fsck checks the layout: every blob's content against its digest, that
// every blob reachable from index.json exists with the size its descriptor
// gives, and that every reachable index, manifest and config parses. It
// returns the problems found, sorted; an error means the check itself could
// not run. Staging files are in-progress writes and are not problems.
func (l *Layout) Fsck() ([]Problem, error) { return l.FsckProgress(nil) }

// FsckProgress is Fsck that calls verified, from several goroutines, with
// the size of each blob once its content has been checked, so that a
// caller can show how far the check has come.
func (l *Layout) FsckProgress(verified func(size int64)) ([]Problem, error) {
	var (
		mu       sync.Mutex
		problems []Problem
	)
	add := func(where string, err error) {
		mu.Lock()
		problems = append(problems, Problem{Where: where, Err: err.Error()})
		mu.Unlock()
	}

	// Every blob's content, hashed on all cores.
	type job struct {
		d    digest.Digest
		size int64
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	corrupt := map[digest.Digest]bool{}
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := l.blobs.Verify(j.d, j.size)
				if verified != nil {
					verified(j.size)
				}
				if err != nil {
					add("blob "+j.d.String(), unwrapBlob(err, j.d))
					mu.Lock()
					corrupt[j.d] = true
					mu.Unlock()
				}
			}
		}()
	}
	present := map[digest.Digest]int64{}
	werr := l.blobs.Walk(func(d digest.Digest, size int64, err error) error {
		if err != nil {
			add("blobs", err)
			return nil
		}
		present[d] = size
		jobs <- job{d, size}
		return nil
	})
	close(jobs)
	wg.Wait()
	if werr != nil {
		return nil, werr
	}

	idx, err := l.Index()
	if err != nil {
		add(IndexFile, err)
		return sortProblems(problems), nil
	}
	checked := map[digest.Digest]bool{}
	for i, root := range idx.Manifests {
		where := fmt.Sprintf("%s manifests[%d]", IndexFile, i)
		if n := root.Annotations[AnnotationRefName]; n != "" {
			where += fmt.Sprintf(" (%s)", n)
		}
		l.fsckDesc(root, where, present, corrupt, checked, add, 0)
	}
	return sortProblems(problems), nil
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
