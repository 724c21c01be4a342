package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/blob"
	"github.com/strata-oci/strata/internal/ctxio"
	"github.com/strata-oci/strata/layout"
	"golang.org/x/sys/unix"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Blobs of at least resumeMinSize bytes are downloaded into a partial file
// that survives an interruption, so the next pull asks only for the bytes
// still missing. Smaller ones are not worth the bookkeeping.
const resumeMinSize = 1 << 20

// partialMaxAge is how long a partial download is kept for a pull that
// never comes back.
const partialMaxAge = 7 * 24 * time.Hour

// PartialDir is where a layout keeps partial downloads, inside its state
// directory and so on the blobs' filesystem: a finished download becomes
// a blob by a hard link (or reflink) after its digest is verified.
func PartialDir(l *layout.Layout) string {
	return filepath.Join(l.Dir(), layout.PartialDir)
}

// resumableSource is a registry as the source of a copy. Large blobs are
// handed to the layout store as lazyBlobs, which start no request until
// the store has decided from which byte to download.
type resumableSource struct {
	repo *remote.Repository
	sess *session
}

func (s *resumableSource) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	// Refused before any request: the registry's answer is not read.
	if err := checkDeclared(d); err != nil {
		return nil, err
	}
	if d.Size >= resumeMinSize && !layout.IsIndex(d.MediaType) && !layout.IsManifest(d.MediaType) {
		return &lazyBlob{ctx: ctx, src: s, desc: d}, nil
	}
	return s.repo.Fetch(ctx, d)
}

func (s *resumableSource) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	return s.repo.Exists(ctx, d)
}

// lazyBlob is a registry blob not requested yet. Read fetches it whole;
// the layout store calls from instead, to resume.
type lazyBlob struct {
	ctx  context.Context
	src  *resumableSource
	desc ocispec.Descriptor
	rc   io.ReadCloser
}

func (b *lazyBlob) Read(p []byte) (int, error) {
	if b.rc == nil {
		rc, err := b.src.repo.Fetch(b.ctx, b.desc)
		if err != nil {
			return 0, err
		}
		b.rc = rc
	}
	return b.rc.Read(p)
}

func (b *lazyBlob) Close() error {
	if b.rc != nil {
		return b.rc.Close()
	}
	return nil
}

// from requests the blob from byte off on. It returns the body and the
// offset the body really starts at: 0 when the registry ignores ranges.
func (b *lazyBlob) from(off int64) (io.ReadCloser, int64, error) {
	if off > 0 {
		if rc, ok := b.ranged(off); ok {
			return rc, off, nil
		}
	}
	rc, err := b.src.repo.Fetch(b.ctx, b.desc)
	return rc, 0, err
}

// ranged asks for the bytes from off on. oras-go has no ranged fetch (its
// seekable reader starts with a full request), so this one request is
// made here, through oras-go's authenticating client. Any answer but a
// matching 206 means "download it whole".
func (b *lazyBlob) ranged(off int64) (io.ReadCloser, bool) {
	ref := b.src.repo.Reference
	ref.Reference = b.desc.Digest.String()
	ctx := auth.AppendRepositoryScope(b.ctx, ref, auth.ActionPull)
	scheme := "https"
	if b.src.repo.PlainHTTP {
		scheme = "http"
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", scheme, ref.Registry, ref.Repository, b.desc.Digest)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, b.desc.Size-1))
	resp, err := b.src.sess.client.Do(req)
	if err != nil {
		return nil, false
	}
	want := fmt.Sprintf("bytes %d-%d/", off, b.desc.Size-1)
	if resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), want) {
		resp.Body.Close()
		return nil, false
	}
	return resp.Body, true
}

// pushResumable downloads a large blob into its partial file, continuing
// where an earlier pull stopped, then makes it a blob once its digest and
// size are verified. The partial file is locked while in use, so two
// pulls of one blob take turns instead of mixing their bytes.
func (s *layoutStore) pushResumable(ctx context.Context, d ocispec.Descriptor, lb *lazyBlob) error {
	if err := s.l.Hold(); err != nil {
		return err
	}
	ps := partialStore(s.l)
	p, err := ps.Path(d.Digest)
	if err != nil {
		return err
	}
	f, err := ps.OpenFile(d.Digest, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open partial download %s: %w", p, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock partial download %s: %w", p, err)
	}
	if s.l.Blobs().Has(d.Digest, d.Size) {
		// Another pull finished it while this one waited for the lock.
		_ = ps.Delete(d.Digest)
		s.o.markFound(d)
		return nil
	}
	for attempt := 0; ; attempt++ {
		resumed, err := s.download(ctx, f, d, lb)
		if err != nil {
			if fi, serr := f.Stat(); errors.Is(err, errTooLong) || serr == nil && fi.Size() == 0 {
				// Not the blob the descriptor declares (never keep it),
				// or nothing to resume from.
				_ = ps.Delete(d.Digest)
			}
			// Anything else (a cut connection, a short answer) keeps
			// what arrived for the next pull to resume.
			return fmt.Errorf("download %s %s: %w", kind(d), d.Digest, err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync partial download %s: %w", p, err)
		}
		// Blobs are read-only; the link below gives this inode a blob name.
		if err := f.Chmod(0o444); err != nil {
			return fmt.Errorf("chmod partial download %s: %w", p, err)
		}
		_, err = s.l.Blobs().CopyFrom(ctx, ps, d.Digest, d.Size)
		if err == nil {
			_ = ps.Delete(d.Digest)
			return nil
		}
		if !errors.Is(err, blob.ErrDigestMismatch) && !errors.Is(err, blob.ErrSizeMismatch) {
			return fmt.Errorf("store %s %s: %w", kind(d), d.Digest, err)
		}
		// The bytes are wrong: never keep them. A resumed download may
		// owe that to its old part, so it is tried once more from zero.
		_ = f.Chmod(0o644)
		if terr := f.Truncate(0); terr != nil {
			_ = ps.Delete(d.Digest)
			return fmt.Errorf("reset partial download %s: %w", p, terr)
		}
		if !resumed || attempt > 0 {
			_ = ps.Delete(d.Digest)
			return fmt.Errorf("download %s %s: %w", kind(d), d.Digest, err)
		}
	}
}

// errTooLong marks a registry answer with more bytes than the descriptor
// declares.
var errTooLong = fmt.Errorf("%w: the registry sent more bytes than the descriptor declares", blob.ErrSizeMismatch)

// download fills f up to d.Size, from its current length on when the
// registry allows it, and says whether it resumed. It reads at most one
// byte past d.Size (then fails with errTooLong), and refuses to start
// when the bytes still missing exceed the free space of f's file system:
// a descriptor may declare any size, and the download would fill the disk
// before it failed.
func (s *layoutStore) download(ctx context.Context, f *os.File, d ocispec.Descriptor, lb *lazyBlob) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	have := fi.Size()
	if have > d.Size {
		have = 0
	}
	if have == d.Size {
		return true, nil
	}
	if err := checkSpace(f, d, d.Size-have); err != nil {
		return false, err
	}
	body, start, err := lb.from(have)
	if err != nil {
		return false, explain(err, lb.src.repo.Reference.Registry)
	}
	defer body.Close()
	if start != have {
		have = start
		if err := checkSpace(f, d, d.Size-have); err != nil {
			return false, err
		}
	}
	if err := f.Truncate(have); err != nil {
		return false, err
	}
	if _, err := f.Seek(have, io.SeekStart); err != nil {
		return false, err
	}
	want := d.Size - have
	pr := &progressReader{r: ctxio.Reader(ctx, io.LimitReader(body, want)), d: d, o: s.o, n: have}
	n, err := io.CopyBuffer(onlyWriter{f}, pr, make([]byte, 1<<20))
	if err != nil {
		return false, err
	}
	if have+n != d.Size {
		return false, fmt.Errorf("%w: the registry sent %d of %d bytes", blob.ErrSizeMismatch, have+n, d.Size)
	}
	// One byte more is an answer longer than declared: the blob is not
	// the one described, whatever its first d.Size bytes are.
	var one [1]byte
	if m, _ := io.ReadFull(body, one[:]); m > 0 {
		return false, errTooLong
	}
	return start > 0, nil
}

// checkSpace refuses a download of need more bytes of d into f when f's
// file system has less than that free.
func checkSpace(f *os.File, d ocispec.Descriptor, need int64) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		return nil // unknown: the write itself will tell
	}
	free := st.Bavail * uint64(st.Bsize)
	if need > 0 && uint64(need) > free {
		return fmt.Errorf("it declares %d bytes (%d still to download), more than the %d bytes free in %s: %w",
			d.Size, need, free, filepath.Dir(f.Name()), unix.ENOSPC)
	}
	return nil
}

// checkDeclared refuses a manifest, index or config whose descriptor
// declares more than the layout reads whole (layout.MaxManifestSize,
// layout.MaxConfigSize), before anything is downloaded.
func checkDeclared(d ocispec.Descriptor) error {
	if d.Size < 0 {
		return fmt.Errorf("%s %s: invalid size %d", kind(d), d.Digest, d.Size)
	}
	switch {
	case layout.IsIndex(d.MediaType) || layout.IsManifest(d.MediaType):
		return checkSize(d, layout.MaxManifestSize)
	case layout.IsConfig(d.MediaType):
		return checkSize(d, layout.MaxConfigSize)
	}
	return nil
}

func checkSize(d ocispec.Descriptor, max int64) error {
	if d.Size > max {
		return fmt.Errorf("%s %s: %w: it declares %d bytes, more than the limit of %d", kind(d), d.Digest, layout.ErrTooLarge, d.Size, max)
	}
	return nil
}

// fetchSmall fetches a manifest, index or config whole, refusing one whose
// descriptor declares more than max before any request; what is read is
// bounded by the descriptor's size and verified against its digest.
func fetchSmall(ctx context.Context, repo *remote.Repository, d ocispec.Descriptor, max int64) ([]byte, error) {
	if err := checkSize(d, max); err != nil {
		return nil, err
	}
	if d.Size < 0 {
		return nil, fmt.Errorf("%s %s: invalid size %d", kind(d), d.Digest, d.Size)
	}
	return content.FetchAll(ctx, repo, d)
}

// onlyWriter hides *os.File's ReadFrom, whose fallback would bypass the
// 1 MiB buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// partialStore is l's partial downloads, seen as a blob store confined
// to the layout: no link below the layout's directory is followed.
func partialStore(l *layout.Layout) *blob.Store {
	return blob.New(PartialDir(l), l.Blobs().StagingDir(), blob.WithRoot(l.Dir()))
}

// prunePartials removes partial downloads that nobody holds and nobody
// touched for partialMaxAge.
func prunePartials(l *layout.Layout) {
	ps := partialStore(l)
	_ = ps.Walk(func(d digest.Digest, _ int64, err error) error {
		if err != nil {
			return nil
		}
		f, err := ps.OpenFile(d, os.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || time.Since(fi.ModTime()) < partialMaxAge {
			return nil
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = ps.Delete(d)
		}
		return nil
	})
}
