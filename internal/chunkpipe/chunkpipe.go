// Package chunkpipe overlaps reading a stream with consuming it: a
// goroutine reads the source in chunks, writes each to a sink and hands
// it on, so that decompressing or hashing runs beside the reader.
package chunkpipe

import (
	"fmt"
	"io"
	"sync"
)

// Pipe reads src in a goroutine, writes every chunk to a sink (a blob
// writer, a hash) and hands the same chunks to its Read side, a few
// chunks ahead, so that both sides run at once on two cores.
type Pipe struct {
	full chan chunk
	free chan []byte
	stop chan struct{}
	done chan struct{}

	cur    []byte
	curBuf []byte
	rerr   error // error seen by the Read side (io.EOF at the end)

	stopOnce sync.Once
	err      error // the producer's failure, valid after done is closed
	werr     error // the sink's, with SinkAside
	o        Options
}

type chunk struct {
	buf []byte
	n   int
	err error
}

// Options size a Pipe and name its two failures in errors.
type Options struct {
	ChunkSize, Chunks int
	// ReadContext and WriteContext prefix errors of src and sink.
	ReadContext, WriteContext string
	// SinkAside writes the sink on a goroutine of its own, between the
	// reading and the Read side: for a sink as costly as the source (a
	// hash behind a decompressor), so that the source alone sets the
	// pace on a core of its own.
	SinkAside bool
}

// New starts reading src.
func New(src io.Reader, sink io.Writer, o Options) *Pipe {
	p := &Pipe{
		full: make(chan chunk, o.Chunks),
		free: make(chan []byte, o.Chunks),
		stop: make(chan struct{}),
		done: make(chan struct{}),
		o:    o,
	}
	for i := 0; i < o.Chunks; i++ {
		p.free <- make([]byte, o.ChunkSize)
	}
	if !o.SinkAside {
		go func() {
			defer close(p.done)
			p.produce(src, sink, p.full)
		}()
		return p
	}
	mid := make(chan chunk, o.Chunks)
	written := make(chan struct{})
	go func() {
		defer close(written)
		p.write(sink, mid)
	}()
	go func() {
		p.produce(src, nil, mid)
		<-written
		if p.werr != nil {
			p.err = p.werr
		}
		close(p.done)
	}()
	return p
}

// write writes the chunks of in to sink and hands them on to the Read
// side, until in is closed.
func (p *Pipe) write(sink io.Writer, in <-chan chunk) {
	defer close(p.full)
	for c := range in {
		if c.n > 0 && p.werr == nil {
			if _, err := sink.Write(c.buf[:c.n]); err != nil {
				p.werr = fmt.Errorf("%s: %w", p.o.WriteContext, err)
				p.send(chunk{err: p.werr})
				// The producer stops; what it still sends is dropped.
				p.stopOnce.Do(func() { close(p.stop) })
			}
		}
		if p.werr != nil {
			continue
		}
		if !p.send(c) {
			// Stopped: take what the producer still sends, so it ends.
			for range in {
			}
			return
		}
	}
}

// produce reads src in chunks into out, writing each to sink first
// (sink nil: none), and closes out at the end.
func (p *Pipe) produce(src io.Reader, sink io.Writer, out chan chunk) {
	defer close(out)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.stop:
			return
		}
		n, err := io.ReadFull(src, buf)
		if err == io.ErrUnexpectedEOF {
			err = io.EOF
		}
		if n > 0 && sink != nil {
			if _, werr := sink.Write(buf[:n]); werr != nil {
				p.err = fmt.Errorf("%s: %w", p.o.WriteContext, werr)
				p.sendTo(out, chunk{err: p.err})
				return
			}
		}
		if err != nil && err != io.EOF {
			p.err = fmt.Errorf("%s: %w", p.o.ReadContext, err)
		}
		c := chunk{buf: buf, n: n, err: err}
		if p.err != nil {
			c.err = p.err
		}
		if !p.sendTo(out, c) || err != nil {
			return
		}
	}
}

func (p *Pipe) send(c chunk) bool { return p.sendTo(p.full, c) }

func (p *Pipe) sendTo(out chan chunk, c chunk) bool {
	select {
	case out <- c:
		return true
	case <-p.stop:
		return false
	}
}

// Read returns the bytes the producer stored, in order.
func (p *Pipe) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.curBuf != nil {
			p.free <- p.curBuf
			p.curBuf = nil
		}
		if p.rerr != nil {
			return 0, p.rerr
		}
		c, ok := <-p.full
		if !ok {
			p.rerr = io.EOF
			return 0, io.EOF
		}
		p.cur, p.curBuf, p.rerr = c.buf[:c.n], c.buf, c.err
		if c.buf == nil {
			p.curBuf = nil
		}
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// ReadErr is the producer's failure if the Read side has already seen
// it, so the caller can tell a source or disk failure from bad content.
func (p *Pipe) ReadErr() error {
	if p.rerr == io.EOF {
		return nil
	}
	return p.rerr
}

// Wait waits for the producer to finish and returns its failure.
func (p *Pipe) Wait() error {
	<-p.done
	return p.err
}

// Stop ends the producer early; it is safe to call after Wait.
func (p *Pipe) Stop() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}
