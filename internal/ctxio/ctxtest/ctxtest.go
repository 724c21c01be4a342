// Package ctxtest stops operations at a chosen point, for tests that
// cancel a long operation mid-way and check what it left.
package ctxtest

import (
	"context"
	"io"
	"sync/atomic"
)

// AtCheck is a context cancelled by its n-th Err call. Long operations
// check their context between blobs and once a megabyte inside one
// (internal/ctxio), so counting checks stops them at a chosen point.
type AtCheck struct {
	context.Context
	cancel context.CancelFunc
	left   atomic.Int64
}

// CancelAtCheck returns a context cancelled by its n-th Err call.
func CancelAtCheck(n int64) *AtCheck {
	ctx, cancel := context.WithCancel(context.Background())
	c := &AtCheck{Context: ctx, cancel: cancel}
	c.left.Store(n)
	return c
}

func (c *AtCheck) Err() error {
	if c.left.Add(-1) <= 0 {
		c.cancel()
	}
	return c.Context.Err()
}

// Reader cancels its context once N bytes have been read through it.
type Reader struct {
	R      io.Reader
	N      int64 // bytes left before the cancel; negative: read after it
	Cancel context.CancelFunc
}

func (c *Reader) Read(p []byte) (int, error) {
	m, err := c.R.Read(p)
	if c.N -= int64(m); c.N <= 0 {
		c.Cancel()
	}
	return m, err
}

// Writer cancels its context once N bytes have been written through it.
type Writer struct {
	W      io.Writer
	N      int64 // bytes left before the cancel; negative: written after it
	Cancel context.CancelFunc
}

func (c *Writer) Write(p []byte) (int, error) {
	m, err := c.W.Write(p)
	if c.N -= int64(m); c.N <= 0 {
		c.Cancel()
	}
	return m, err
}
