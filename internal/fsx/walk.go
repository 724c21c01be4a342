package fsx

import "sync"

// Walk spreads a tree walk over a bounded number of goroutines beside the
// caller's and keeps the first error any part of it met. The walk itself
// is the caller's: typically it reads a directory, hands each
// subdirectory to Group.Go, which walks it on a free goroutine or, when
// none is free, in line, and waits for its group before it finishes the
// directory. The bound is shared by the whole tree.
type Walk struct {
	slots chan struct{}
	mu    sync.Mutex
	err   error
}

// NewWalk returns a walk that runs at most extra goroutines beside the
// caller's (0: everything in line).
func NewWalk(extra int) *Walk {
	return &Walk{slots: make(chan struct{}, max(extra, 0))}
}

// Fail records err as the walk's error unless one is recorded already.
func (w *Walk) Fail(err error) {
	if err == nil {
		return
	}
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// Err is the first error recorded, nil while there is none.
func (w *Walk) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Group is the part of a walk started under one directory.
type Group struct {
	w  *Walk
	wg sync.WaitGroup
}

// Group starts a group of work of the walk.
func (w *Walk) Group() *Group { return &Group{w: w} }

// Go runs fn on a goroutine of its own while the walk has one free, else
// in line. fn's error is recorded (Fail). In line, Go returns it, so the
// caller can stop at once; once the walk has failed, Go runs nothing and
// returns the walk's error.
func (g *Group) Go(fn func() error) error {
	if err := g.w.Err(); err != nil {
		return err
	}
	select {
	case g.w.slots <- struct{}{}:
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() { <-g.w.slots }()
			g.w.Fail(fn())
		}()
		return nil
	default:
	}
	err := fn()
	g.w.Fail(err)
	return err
}

// Wait waits for the goroutines the group's Go started and returns the
// walk's first error.
func (g *Group) Wait() error {
	g.wg.Wait()
	return g.w.Err()
}
