package remote

import (
	"context"
	"io"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
)

// onceRepository is a registry repository whose blob uploads and mounts
// of one digest, by the pushes of one Client, wait for each other. Images
// that share layers, pushed at once (strata sync -j), would otherwise
// each find a shared layer missing and upload it in parallel; this way
// the first sends it and the others find it there once it is.
type onceRepository struct {
	*remote.Repository
	key      string // host/repository
	inflight *keyedMutex
	o        *options
}

// target is repo as a push to ref uses it: shared with the Client's other
// pushes when there is a Client.
func (o *options) target(repo *remote.Repository, ref Reference) *onceRepository {
	return &onceRepository{Repository: repo, key: ref.Host() + "/" + ref.Repository, inflight: o.inflight, o: o}
}

// wait takes d's turn and says whether the repository holds d now: a
// push of another image sent it while this one waited.
func (r *onceRepository) wait(ctx context.Context, d ocispec.Descriptor) (unlock func(), present bool) {
	if r.inflight == nil || layout.IsManifest(d.MediaType) || layout.IsIndex(d.MediaType) {
		return func() {}, false
	}
	unlock = r.inflight.lock(r.key + "\x00" + d.Digest.String())
	if ok, err := r.Repository.Exists(ctx, d); err == nil && ok {
		// Reported as found, not as sent.
		r.o.markFound(d)
		return unlock, true
	}
	return unlock, false
}

func (r *onceRepository) Push(ctx context.Context, d ocispec.Descriptor, content io.Reader) error {
	unlock, present := r.wait(ctx, d)
	defer unlock()
	if present {
		return errdef.ErrAlreadyExists // oras-go: done
	}
	return r.Repository.Push(ctx, d, content)
}

func (r *onceRepository) Mount(ctx context.Context, d ocispec.Descriptor, from string, getContent func() (io.ReadCloser, error)) error {
	unlock, present := r.wait(ctx, d)
	defer unlock()
	if present {
		return nil
	}
	return r.Repository.Mount(ctx, d, from, getContent)
}
