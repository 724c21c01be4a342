// Package ctxio makes long streams stop when their context is done: a
// reader or writer that fails with the context's error instead of going
// on. The context is checked before the first call and then once per
// megabyte, so a stream pays one check a megabyte, not one a call.
package ctxio

import (
	"context"
	"io"
)

// checkEvery is how many bytes may pass between two checks of the
// context.
const checkEvery = 1 << 20

// Reader returns r reading until ctx is done, then failing with ctx's
// error. A context that can never be done gives r itself. A read blocked
// in r is not interrupted: the error comes with the next read.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	if ctx.Done() == nil {
		return r
	}
	return &reader{ctx: ctx, r: r}
}

type reader struct {
	ctx  context.Context
	r    io.Reader
	left int // bytes until the next check; 0 checks at once
}

func (c *reader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
		c.left = checkEvery
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}

// Writer returns w writing until ctx is done, then failing with ctx's
// error. A context that can never be done gives w itself.
func Writer(ctx context.Context, w io.Writer) io.Writer {
	if ctx.Done() == nil {
		return w
	}
	return &writer{ctx: ctx, w: w}
}

type writer struct {
	ctx  context.Context
	w    io.Writer
	left int
}

func (c *writer) Write(p []byte) (int, error) {
	if c.left <= 0 {
		if err := c.ctx.Err(); err != nil {
			return 0, err
		}
		c.left = checkEvery
	}
	n, err := c.w.Write(p)
	c.left -= n
	return n, err
}
