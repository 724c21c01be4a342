package layout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/tempdir"
	"golang.org/x/sys/unix"
)

// Prefixes of the working directories (internal/tempdir) made in a
// layout's StateDir: an archive being read into it (layout/archive), an
// image being converted on its way in (layout/transport). gc removes those
// whose owner died.
const (
	ArchiveWorkPrefix = "archive-"
	CopyWorkPrefix    = ".strata-copy-"
)

// GCResult says what gc removed.
type GCResult struct {
	Removed []digest.Digest `json:"removed"`
	Bytes   int64           `json:"bytes"`
	Staging int             `json:"staging"`
	// Referrers are the untagged referrers whose subject was gone: their
	// index.json entries were removed with their blobs.
	Referrers []digest.Digest `json:"referrers,omitempty"`
}

// GC removes blobs that no entry of index.json reaches (through indexes and
// manifests) and staging files left by killed processes. Untagged entries
// are roots like named ones, except untagged referrers (signatures, SBOMs:
// see ReferrerIndex), which are kept while their subject is kept and
// otherwise removed, entry and blobs. GC waits until no other process holds the
// layout for writing, and holds it exclusively while it runs, so a blob
// that another strata process is writing is never removed. If any
// reachable manifest or index cannot be read, nothing is removed.
//
// Cancelling ctx stops the wait and the marking with ctx's error, and
// nothing is removed; once GC starts removing (unlinks, quick) it
// finishes, so a stopped gc never leaves a layout half collected.
func (l *Layout) GC(ctx context.Context) (*GCResult, error) {
	release, err := l.lockExclusive(ctx)
	if err != nil {
		return nil, fmt.Errorf("lock layout %s for gc: %w", l.dir, err)
	}
	defer release()
	// gc changes the layout: its creator must not take it back now.
	if !hasMarker(l.dir) {
		return nil, fmt.Errorf("gc %s: %w", l.dir, ErrRemoved)
	}
	if err := l.claim(); err != nil {
		return nil, err
	}
	idx, err := l.Index()
	if err != nil {
		return nil, err
	}
	marked, dropped, err := l.gcMark(ctx, idx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("gc %s: nothing removed: %w", l.dir, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(dropped) > 0 {
		// The entries go first: a crash then leaves blobs for the next gc,
		// never an entry whose blobs are gone.
		err := l.rewriteIndex(func(idx *Index) error {
			kept := idx.Manifests[:0]
			for _, m := range idx.Manifests {
				if primaryName(m) == "" && dropped[m.Digest] {
					continue
				}
				kept = append(kept, m)
			}
			idx.Manifests = kept
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("gc %s: nothing removed: %w", l.dir, err)
		}
	}
	res, err := l.sweep(marked)
	for d := range dropped {
		res.Referrers = append(res.Referrers, d)
	}
	slices.Sort(res.Referrers)
	return res, err
}

// gcMark marks what gc keeps: every blob the entries of idx reach, except
// that an untagged referrer is a root only while its subject is marked
// (through another root, or a kept referrer). It returns the untagged
// referrers that are not kept.
func (l *Layout) gcMark(ctx context.Context, idx *Index) (map[digest.Digest]bool, map[digest.Digest]bool, error) {
	ri, err := l.ReferrerIndexOf(ctx, idx.Manifests)
	if err != nil {
		return nil, nil, err
	}
	marked := map[digest.Digest]bool{}
	mark := func(root ocispec.Descriptor) error {
		return l.Walk(root, func(d ocispec.Descriptor, _ []byte) error {
			marked[d.Digest] = true
			return nil
		})
	}
	var pending []ocispec.Descriptor
	for _, root := range idx.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if _, ok := ri.IsUntaggedReferrer(root.Digest); ok && primaryName(root) == "" {
			pending = append(pending, root)
			continue
		}
		if err := mark(root); err != nil {
			return nil, nil, err
		}
	}
	// Referrers of referrers: go on while a round keeps one more.
	for more := true; more; {
		more = false
		rest := pending[:0]
		for _, p := range pending {
			r, _ := ri.IsUntaggedReferrer(p.Digest)
			if !marked[r.Subject] {
				rest = append(rest, p)
				continue
			}
			if err := mark(p); err != nil {
				return nil, nil, err
			}
			more = true
		}
		pending = rest
	}
	dropped := map[digest.Digest]bool{}
	for _, p := range pending {
		if !marked[p.Digest] {
			dropped[p.Digest] = true
		}
	}
	return marked, dropped, nil
}

// lockExclusive takes gc.lock exclusively for this Layout, waiting for
// every other holder or for ctx; release gives it back (to the shared
// hold this Layout had, if it had one).
func (l *Layout) lockExclusive(ctx context.Context) (release func(), _ error) {
	l.mu.Lock()
	own := l.gcLock
	l.mu.Unlock()
	if own == nil {
		lock, err := l.lockFileCtx(ctx, gcLock, unix.LOCK_EX)
		if err != nil {
			return nil, err
		}
		return func() { lock.Close() }, nil
	}
	// Converting our own shared hold to exclusive waits for every other
	// holder; converting back lets them in again.
	back := func() { _ = flockRetry(own, unix.LOCK_SH) }
	if err := flockCtx(ctx, own, unix.LOCK_EX); err != nil {
		back()
		return nil, err
	}
	return back, nil
}

// reachable marks every blob an entry of idx reaches. ctx is checked
// between entries.
func (l *Layout) reachable(ctx context.Context, idx *Index) (map[digest.Digest]bool, error) {
	marked := map[digest.Digest]bool{}
	for _, root := range idx.Manifests {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		err := l.Walk(root, func(d ocispec.Descriptor, _ []byte) error {
			marked[d.Digest] = true
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return marked, nil
}

// sweep removes the blobs not marked, dead staging files, index
// temporaries and the working directories of killed processes.
func (l *Layout) sweep(marked map[digest.Digest]bool) (*GCResult, error) {
	res := &GCResult{}
	err := l.blobs.Walk(func(d digest.Digest, size int64, werr error) error {
		if werr != nil || marked[d] {
			return nil // not a blob name: not ours to remove
		}
		if err := l.blobs.Delete(d); err != nil {
			return err
		}
		res.Removed = append(res.Removed, d)
		res.Bytes += size
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("gc %s: %w", l.dir, err)
	}
	n, err := l.blobs.CleanStaging()
	if err != nil {
		return res, fmt.Errorf("gc %s: %w", l.dir, err)
	}
	res.Staging += n
	res.Staging += l.cleanIndexTemps()
	res.Staging += l.cleanPartials()
	// Working directories of killed archive reads and conversions.
	for _, prefix := range []string{ArchiveWorkPrefix, CopyWorkPrefix} {
		res.Staging += tempdir.Sweep(filepath.Join(l.dir, StateDir), prefix)
	}
	return res, nil
}

// cleanPartials removes the partial downloads that stopped pulls kept
// for their next run (layout/remote). gc holds the layout exclusively, so
// no pull is writing one now; a user who runs gc wants the space back.
func (l *Layout) cleanPartials() int {
	ps := blob.New(filepath.Join(l.dir, PartialDir), l.blobs.StagingDir(), blob.WithRoot(l.dir))
	n := 0
	_ = ps.Walk(func(d digest.Digest, _ int64, err error) error {
		if err == nil && ps.Delete(d) == nil {
			n++
		}
		return nil
	})
	return n
}

// cleanIndexTemps removes temporary files a killed process left while
// replacing index.json or oci-layout.
func (l *Layout) cleanIndexTemps() int {
	lock, err := l.lockFile(indexLock, unix.LOCK_EX)
	if err != nil {
		return 0
	}
	defer lock.Close()
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "."+IndexFile+".tmp-") || strings.HasPrefix(name, "."+LayoutFile+".tmp-") {
			if os.Remove(filepath.Join(l.dir, name)) == nil {
				n++
			}
		}
	}
	return n
}
