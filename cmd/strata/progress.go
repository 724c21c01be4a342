package main

import (
	"io"
	"os"
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress draws progress bars on stderr for long operations. It is inert
// (every method passes data through untouched and draws nothing) unless
// g.showProgress() says stderr is a terminal and --quiet is off, so commands
// can use it unconditionally:
//
//	p := g.newProgress()
//	defer p.Wait()
//	r = p.Reader("layer "+d.Encoded()[:12], size, r) // bytes read so far
//	w = p.Writer("export", -1, w)                    // unknown size is fine
//	c := p.Counter("verify blobs", int64(n))         // items, not bytes
//	c.Add(1)
//	b := p.Bytes("check", total)                     // bytes, advanced by hand
//	b.Add(n)
//
// A progress and its bars are safe for concurrent use. Wait must be called
// once, after the last bar's data has been read; it finishes bars that
// stopped early (an error, an unknown size) instead of hanging on them.
type progress struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars []*mpb.Bar
}

// newProgress returns a progress that draws only when g.showProgress().
func (g *globalFlags) newProgress() *progress {
	if !g.showProgress() {
		return &progress{}
	}
	return newProgressTo(os.Stderr)
}

// newProgressTo returns a progress that always draws, on w, even when w
// is not a terminal.
func newProgressTo(w io.Writer) *progress {
	return &progress{p: mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithAutoRefresh())}
}

// active says whether bars are drawn.
func (p *progress) active() bool { return p != nil && p.p != nil }

// byteBar adds a bar counting bytes. A size <= 0 means unknown: the bar
// shows the running count and completes when the stream ends.
func (p *progress) byteBar(name string, size int64) *mpb.Bar {
	var opts []mpb.BarOption
	if size > 0 {
		opts = []mpb.BarOption{
			mpb.PrependDecorators(
				decor.Name(name, decor.WCSyncSpaceR),
				decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			),
		}
	} else {
		size = 0
		opts = []mpb.BarOption{
			mpb.PrependDecorators(
				decor.Name(name, decor.WCSyncSpaceR),
				decor.Current(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			),
			mpb.AppendDecorators(
				decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace),
			),
		}
	}
	b := p.p.AddBar(size, opts...)
	p.mu.Lock()
	p.bars = append(p.bars, b)
	p.mu.Unlock()
	return b
}

// Reader returns r wrapped so that reading it advances a bar named name
// whose total is size bytes (<= 0: unknown). With no bars drawn it returns
// r itself, so fast paths that look for io.WriterTo are kept.
func (p *progress) Reader(name string, size int64, r io.Reader) io.Reader {
	if !p.active() {
		return r
	}
	return &progressReader{r: r, bar: p.byteBar(name, size), unknown: size <= 0}
}

// Writer returns w wrapped so that writing to it advances a bar named name
// whose total is size bytes (<= 0: unknown; the bar completes at Wait).
// With no bars drawn it returns w itself.
func (p *progress) Writer(name string, size int64, w io.Writer) io.Writer {
	if !p.active() {
		return w
	}
	return &progressWriter{w: w, bar: p.byteBar(name, size)}
}

// Bytes adds a byte bar of total bytes (<= 0: unknown) that the caller
// advances with Add, for work that is not a stream it can wrap.
func (p *progress) Bytes(name string, total int64) *counter {
	if !p.active() {
		return nil
	}
	return &counter{bar: p.byteBar(name, total)}
}

// Counter adds a bar counting items (blobs, layers, files) up to total.
func (p *progress) Counter(name string, total int64) *counter {
	if !p.active() {
		return nil
	}
	b := p.p.AddBar(total,
		mpb.PrependDecorators(
			decor.Name(name, decor.WCSyncSpaceR),
			decor.CountersNoUnit("%d / %d", decor.WCSyncSpace),
		),
		mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace)),
	)
	p.mu.Lock()
	p.bars = append(p.bars, b)
	p.mu.Unlock()
	return &counter{bar: b}
}

// Wait finishes the bars that did not reach their total, waits for the
// last frame to be drawn and releases the terminal. It is safe on an inert
// progress and on a nil one.
func (p *progress) Wait() {
	if !p.active() {
		return
	}
	p.mu.Lock()
	bars := p.bars
	p.bars = nil
	p.mu.Unlock()
	for _, b := range bars {
		// A bar of unknown size completes at its current count; one that
		// stopped short of a known size is left as drawn.
		b.SetTotal(-1, true)
		b.Abort(false)
	}
	p.p.Wait()
}

// counter advances a bar made by Counter or Bytes. A nil counter (no bars drawn) does
// nothing.
type counter struct{ bar *mpb.Bar }

// Add advances the counter by n items or bytes. It is safe for concurrent
// use.
func (c *counter) Add(n int64) {
	if c != nil {
		c.bar.IncrInt64(n)
	}
}

type progressReader struct {
	r       io.Reader
	bar     *mpb.Bar
	unknown bool
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	if n > 0 {
		pr.bar.IncrBy(n)
	}
	if err == io.EOF && pr.unknown {
		pr.bar.SetTotal(-1, true)
	}
	return n, err
}

type progressWriter struct {
	w   io.Writer
	bar *mpb.Bar
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	if n > 0 {
		pw.bar.IncrBy(n)
	}
	return n, err
}
