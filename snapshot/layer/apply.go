package layer

import (
	"archive/tar"
	"context"
	"fmt"
	"hash/crc64"
	"io"

	tstar "github.com/vbatts/tar-split/archive/tar"
	"github.com/vbatts/tar-split/tar/storage"
)

// Apply extracts the uncompressed tar stream r onto dir as one layer,
// following the OCI layer spec, and updates files (the merged file list)
// to match. Every write is confined to dir; a name that climbs out of it
// is refused with ErrUnsafePath. On error dir is left half-written: the
// caller builds snapshots in a temporary directory and removes it. r is
// read to its end. A cancelled ctx stops it at the next entry with
// ctx's error.
func Apply(ctx context.Context, dir string, r io.Reader, opts ApplyOptions, files Files) error {
	// One reader for both paths: the recording one reads sparse entries
	// region by region, where archive/tar would hand out their holes.
	return applyRecording(ctx, dir, r, opts, files, nil, "")
}

// applyRecording is Apply that also records the layer's tar-split
// metadata in p (nil: none), in the same pass and goroutine (see
// layerReader). Regular files that a later entry replaces are moved to
// the directory shadow (made when first needed; "" removes them
// instead), named by their entry's number, so that a rebuild finds every
// payload.
func applyRecording(ctx context.Context, dir string, r io.Reader, opts ApplyOptions, files Files, p *packer, shadow string) error {
	a, err := newApplier(dir, opts, files)
	if err != nil {
		return err
	}
	defer a.close()
	a.shadow.dir = shadow
	lr := newLayerReader(r, p, a.buf)
	done := ctx.Done()
	for seq := 0; ; seq++ {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		th, frags, data, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		a.shadow.seq = seq
		if err := lr.apply(a, th, frags, data); err != nil {
			return err
		}
	}
	if err := a.finish(); err != nil {
		return err
	}
	return lr.trailer()
}

// layerReader reads a layer's tar stream for the applier and records its
// tar-split metadata. tar-split's own reader (its fork of archive/tar)
// parses the stream; a tap under it keeps the raw bytes in front of each
// entry, which become the segments, and checksums each entry's data as
// the archive holds it (a sparse file's data without its holes, whose
// map is recorded with the entry). The stream is read to its end,
// padding after the end-of-archive marker included.
type layerReader struct {
	r   io.Reader
	tap *tapReader
	tr  *tstar.Reader
	p   *packer // nil: nothing recorded
	buf []byte
}

func newLayerReader(r io.Reader, p *packer, buf []byte) *layerReader {
	tap := &tapReader{r: r}
	if p != nil {
		tap.sum = crc64.New(storage.CRCTable)
	}
	return &layerReader{r: r, tap: tap, tr: tstar.NewReader(tap), p: p, buf: buf}
}

// segment records raw bytes of the layer that belong to no entry's data.
func (lr *layerReader) segment(b []byte) error {
	if len(b) == 0 || lr.p == nil {
		return nil
	}
	_, err := lr.p.AddEntry(storage.Entry{Type: storage.SegmentType, Payload: b})
	return err
}

// next reads the next entry's header and, for a sparse entry, its map
// and the bytes of data the archive holds for it; io.EOF at the end of
// the archive.
func (lr *layerReader) next() (*tstar.Header, []fragment, int64, error) {
	lr.tap.startHeader()
	th, err := lr.tr.Next()
	if err == io.EOF {
		if err := lr.segment(lr.tap.head); err != nil {
			return nil, nil, 0, err
		}
		return nil, nil, 0, io.EOF
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("read tar: %w", err)
	}
	// Entries start on 512-byte blocks: what precedes the first block
	// boundary is the padding of the entry before.
	frags, data, err := sparseFragments(th, lr.tap.head, int(-lr.tap.started&511))
	if err == nil && frags != nil {
		err = checkFragments(frags, th.Size, data)
	}
	if err != nil {
		return nil, nil, 0, fmt.Errorf("entry %q: %w", th.Name, err)
	}
	if err := lr.segment(lr.tap.head); err != nil {
		return nil, nil, 0, err
	}
	lr.tap.startData()
	return th, frags, data, nil
}

// apply hands the entry th to the applier, reads what it left of the
// entry's data and records the entry.
func (lr *layerReader) apply(a *applier, th *tstar.Header, frags []fragment, data int64) error {
	hdr := stdHeader(th)
	var body io.Reader = lr.tr
	var sd *sparseData
	if frags != nil {
		sd = newSparseData(lr.tap, frags, th.Size, data)
		body = sd
	}
	if err := a.entry(hdr, body); err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	// What the entry did not read (payloads of non-files) still counts
	// for the checksum.
	var err error
	if sd != nil {
		err = sd.drain()
		// The tar reader skips the data it did not hand out.
		lr.tap.fake = data
	} else {
		_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{lr.tr}, lr.buf)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	if lr.p == nil {
		return nil
	}
	e := storage.Entry{Type: storage.FileType, Size: lr.tap.data}
	if lr.tap.data > 0 {
		e.Payload = lr.tap.sum.Sum(nil)
	}
	e.SetName(th.Name)
	return lr.p.addFile(e, frags)
}

// trailer records the padding after the end-of-archive marker, which
// belongs to the layer too.
func (lr *layerReader) trailer() error {
	for {
		n, err := io.ReadFull(lr.r, lr.buf)
		if serr := lr.segment(lr.buf[:n]); serr != nil {
			return serr
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// stdHeader converts a header of tar-split's tar reader.
func stdHeader(h *tstar.Header) *tar.Header {
	return &tar.Header{
		Typeflag: h.Typeflag, Name: h.Name, Linkname: h.Linkname, Size: h.Size,
		Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Uname: h.Uname, Gname: h.Gname,
		ModTime: h.ModTime, AccessTime: h.AccessTime, ChangeTime: h.ChangeTime,
		Devmajor: h.Devmajor, Devminor: h.Devminor, PAXRecords: h.PAXRecords,
	}
}
