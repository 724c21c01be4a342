package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/snapshot/layer"
)

// ErrVerify means a snapshot's files no longer rebuild its layer.
var ErrVerify = errors.New("snapshot does not rebuild its layer")

// Rebuild writes the snapshot's layer, uncompressed and byte for byte as
// it was extracted, to w: the tar-split metadata gives headers and
// padding, fs/ gives the file contents.
func (i *Info) Rebuild(w io.Writer) error {
	if err := layer.Rebuild(w, i.FS(), i.Dir); err != nil {
		return fmt.Errorf("snapshot %s: %w", i.ID, err)
	}
	return nil
}

// Verify rebuilds the snapshot's layer and checks it against its
// diffID. A cancelled ctx stops it with ctx's error.
func (i *Info) Verify(ctx context.Context) error {
	h := i.DiffID.Algorithm().Hash()
	if err := i.Rebuild(ctxWriter{ctx, h}); err != nil {
		return err
	}
	if got := digest.NewDigest(i.DiffID.Algorithm(), h); got != i.DiffID {
		return fmt.Errorf("snapshot %s: %w: rebuilt %s, want %s", i.ID, ErrVerify, got, i.DiffID)
	}
	return nil
}

// ctxWriter is a writer that fails once its context is done: a long
// rebuild stops at its next write.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}
