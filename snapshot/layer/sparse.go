package layer

import (
	"bytes"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/strata-oci/strata/internal/fsx"
	tstar "github.com/vbatts/tar-split/archive/tar"
	"golang.org/x/sys/unix"
)

// holeMin is the size from which a regular file is written with holes
// where its data has whole blocks of zeros: below it the zero check and
// the final ftruncate cost more than the blocks they could save.
const holeMin = 64 << 10

// zeros is what a block is compared with to find holes.
var zeros [64 << 10]byte

// holeBlock is the unit holes are made of for the file fd: its file
// system's preferred I/O size (a power of two within [512, 64 KiB]), so
// that a skipped block is a whole allocation unit.
func holeBlock(fd int) int {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Blksize < 512 || st.Blksize > int64(len(zeros)) || st.Blksize&(st.Blksize-1) != 0 {
		return 4096
	}
	return int(st.Blksize)
}

// writeHoley copies r to the file fd from offset off, leaving holes where
// a whole block (blk bytes, counted from offset 0 of the file) is zero;
// buf's length must be a multiple of blk. It returns the bytes copied.
// The caller sets the final size with ftruncate: a trailing hole is not
// written at all.
func writeHoley(fd int, r io.Reader, off int64, buf []byte, blk int) (int64, error) {
	var done int64
	for {
		// Fill the buffer so that every block but the last is whole
		// and starts at a multiple of blk (when off is aligned).
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if werr := pwriteData(fd, buf[:n], off+done, blk); werr != nil {
				return done, werr
			}
			done += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
	}
}

// pwriteData writes the non-zero blocks of b at off in fd.
func pwriteData(fd int, b []byte, off int64, blk int) error {
	i := 0
	for i < len(b) {
		// Skip zero blocks.
		for i < len(b) && isZero(b[i:min(i+blk, len(b))]) {
			i += blk
		}
		if i >= len(b) {
			return nil
		}
		j := i
		for j < len(b) && !isZero(b[j:min(j+blk, len(b))]) {
			j += blk
		}
		j = min(j, len(b))
		if err := fsx.PwriteAll(fd, b[i:j], off+int64(i)); err != nil {
			return err
		}
		i = j
	}
	return nil
}

func isZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }

// copyHoley copies the file src to dst (both open descriptors, dst
// empty), reading only src's data extents where the file system reports
// them, and leaving holes in dst for src's holes and zero blocks.
func copyHoley(dst, src int, buf []byte) error {
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		return err
	}
	size, blk := st.Size, holeBlock(dst)
	for off := int64(0); off < size; {
		start, err := unix.Seek(src, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole is left
		}
		end := size
		if err != nil {
			// No SEEK_DATA here: all of the rest is data.
			start = off
		} else if e, err := unix.Seek(src, start, unix.SEEK_HOLE); err == nil {
			end = min(e, size)
		}
		if start >= end {
			break
		}
		r := io.NewSectionReader(fsx.FdReaderAt(src), start, end-start)
		n, err := writeHoley(dst, r, start, buf, blk)
		if err != nil {
			return err
		}
		if n != end-start {
			return fmt.Errorf("copy: %d bytes at %d, want %d", n, start, end-start)
		}
		off = end
	}
	return unix.Ftruncate(dst, size)
}

// fragment is one data region of a sparse file: where it lies in the
// file, and how long it is. In the archive the regions are stored one
// after the other, holes left out.
type fragment [2]int64

// tapReader sits under tar-split's tar reader and sees every byte of the
// layer: while a header is read it keeps the bytes (padding, headers,
// extension blocks, a PAX 1.0 sparse map), which become the tar-split
// segment as they are; while an entry's data is read it checksums and
// counts the bytes as they are in the archive (a sparse file's data
// without its holes), which is what a rebuild must write back.
//
// A sparse entry's data is read from the tap directly, never through
// tar-split's reader, which would hand out every byte of every hole: a
// few bytes of layer could claim terabytes. The tar reader then skips
// the data it believes unread, and the tap hands it that many fake
// bytes.
type tapReader struct {
	r       io.Reader
	header  bool
	head    []byte
	sum     hash.Hash // nil: no checksums
	data    int64     // data bytes of the current entry
	total   int64     // bytes read from the start of the layer
	started int64     // total when the current header began
	fake    int64     // zero bytes to hand out before reading on
}

func (t *tapReader) Read(b []byte) (int, error) {
	if t.fake > 0 {
		n := int(min(int64(len(b)), t.fake))
		clear(b[:n])
		t.fake -= int64(n)
		return n, nil
	}
	n, err := t.r.Read(b)
	if n > 0 {
		if t.header {
			t.head = append(t.head, b[:n]...)
		} else {
			if t.sum != nil {
				t.sum.Write(b[:n])
			}
			t.data += int64(n)
		}
		t.total += int64(n)
	}
	return n, err
}

// startHeader begins recording the bytes in front of the next entry.
func (t *tapReader) startHeader() {
	t.header, t.head, t.started = true, t.head[:0], t.total
}

// startData begins checksumming an entry's data.
func (t *tapReader) startData() {
	t.header, t.data = false, 0
	if t.sum != nil {
		t.sum.Reset()
	}
}

// Names of the PAX records of GNU's sparse formats.
const (
	paxSparseMajor   = "GNU.sparse.major"
	paxSparseMinor   = "GNU.sparse.minor"
	paxSparseMap     = "GNU.sparse.map"
	paxSparseBlocks  = "GNU.sparse.numblocks"
	maxSparseEntries = 1 << 20
)

// sparseFragments returns the data regions of the sparse entry h (nil
// when h is not sparse) and the bytes of data the archive holds for it
// after what tar-split's reader consumed. head holds the raw bytes the
// reader consumed to return h (the padding of the entry before it
// included), and pad is the length of that padding. The reader parsed
// the map already but does not expose it: it is read here again, from
// the same bytes, in the four forms GNU tar writes (old GNU 'S' headers
// with their extension blocks, PAX 0.0, 0.1 and 1.0).
func sparseFragments(h *tstar.Header, head []byte, pad int) ([]fragment, int64, error) {
	if pad < 0 || pad > len(head) {
		return nil, 0, fmt.Errorf("%w: header bytes out of step", ErrSparseMap)
	}
	var (
		frags []fragment
		err   error
		map10 bool
	)
	major, minor := h.PAXRecords[paxSparseMajor], h.PAXRecords[paxSparseMinor]
	switch {
	case h.Typeflag == tstar.TypeGNUSparse:
	case major == "0" && (minor == "0" || minor == "1"):
		frags, err = pax01Map(h.PAXRecords)
	case major == "1" && minor == "0":
		map10 = true
	case major != "" || minor != "":
		return nil, 0, nil // an unknown version: tar reads it as a plain file
	case h.PAXRecords[paxSparseMap] != "":
		frags, err = pax01Map(h.PAXRecords)
	default:
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	main, rest, err := mainHeader(head[pad:])
	if err != nil {
		return nil, 0, err
	}
	// The data size as the reader took it: the header's, unless a PAX
	// record gives it.
	size, ok := parseNumeric(main[124:136])
	if v := h.PAXRecords["size"]; v != "" {
		var perr error
		size, perr = strconv.ParseInt(v, 10, 64)
		ok = perr == nil
	}
	if !ok || size < 0 {
		return nil, 0, fmt.Errorf("%w: bad data size", ErrSparseMap)
	}
	switch {
	case h.Typeflag == tstar.TypeGNUSparse:
		// rest is the extension blocks, not part of the data.
		frags, err = oldGNUMap(main, rest)
	case map10:
		// rest is the map, read from the start of the data.
		frags, err = pax10Map(rest)
		size -= int64(len(rest))
	}
	if err != nil {
		return nil, 0, err
	}
	if size < 0 {
		return nil, 0, fmt.Errorf("%w: map larger than the data", ErrSparseMap)
	}
	return frags, size, nil
}

// mainHeader walks the header blocks in b (PAX records, GNU long names
// and their data) to the entry's own header block, and returns it and
// the bytes after it.
func mainHeader(b []byte) (main, rest []byte, err error) {
	for len(b) >= 512 {
		blk := b[:512]
		switch blk[156] {
		case tstar.TypeXHeader, tstar.TypeXGlobalHeader, tstar.TypeGNULongName, tstar.TypeGNULongLink:
			n, ok := parseNumeric(blk[124:136])
			if !ok || n < 0 || n > int64(len(b)) {
				return nil, nil, fmt.Errorf("%w: bad size of a %q header", ErrSparseMap, blk[156])
			}
			skip := 512 + (n+511)/512*512
			if skip > int64(len(b)) {
				return nil, nil, fmt.Errorf("%w: truncated %q header", ErrSparseMap, blk[156])
			}
			b = b[skip:]
		default:
			return blk, b[512:], nil
		}
	}
	return nil, nil, fmt.Errorf("%w: no entry header", ErrSparseMap)
}

// oldGNUMap reads the map of an old GNU sparse header: four entries in
// the header, 21 in each extension block that follows while the
// "extended" flag is set.
func oldGNUMap(main, ext []byte) ([]fragment, error) {
	var out []fragment
	arr, more := main[386:386+4*24], main[482] != 0
	for {
		for i := 0; i+24 <= len(arr); i += 24 {
			if arr[i] == 0 {
				break
			}
			off, ok1 := parseNumeric(arr[i : i+12])
			n, ok2 := parseNumeric(arr[i+12 : i+24])
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%w: bad number in an old GNU map", ErrSparseMap)
			}
			if len(out) >= maxSparseEntries {
				return nil, fmt.Errorf("%w: too many entries", ErrSparseMap)
			}
			out = append(out, fragment{off, n})
		}
		if !more {
			return out, nil
		}
		if len(ext) < 512 {
			return nil, fmt.Errorf("%w: missing extension block", ErrSparseMap)
		}
		arr, more, ext = ext[:21*24], ext[504] != 0, ext[512:]
	}
}

// pax01Map reads GNU.sparse.map ("offset,size,offset,size..."), the
// form of PAX 0.1 and what tar-split's reader makes of 0.0's repeated
// offset and numbytes records.
func pax01Map(pax map[string]string) ([]fragment, error) {
	s := pax[paxSparseMap]
	if s == "" {
		return []fragment{}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts)%2 != 0 || len(parts)/2 > maxSparseEntries {
		return nil, fmt.Errorf("%w: %d numbers in %s", ErrSparseMap, len(parts), paxSparseMap)
	}
	out := make([]fragment, 0, len(parts)/2)
	for i := 0; i < len(parts); i += 2 {
		off, err1 := strconv.ParseInt(parts[i], 10, 64)
		n, err2 := strconv.ParseInt(parts[i+1], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: bad number in %s", ErrSparseMap, paxSparseMap)
		}
		out = append(out, fragment{off, n})
	}
	return out, nil
}

// pax10Map reads the map PAX 1.0 puts at the start of the entry's data:
// decimal numbers one a line, the count first, then offset and size
// pairs, padded to a whole block.
func pax10Map(b []byte) ([]fragment, error) {
	next := func() (int64, bool) {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return 0, false
		}
		v, err := strconv.ParseInt(string(b[:i]), 10, 64)
		b = b[i+1:]
		return v, err == nil
	}
	count, ok := next()
	if !ok || count < 0 || count > maxSparseEntries {
		return nil, fmt.Errorf("%w: bad PAX 1.0 map count", ErrSparseMap)
	}
	out := make([]fragment, 0, count)
	for i := int64(0); i < count; i++ {
		off, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: bad PAX 1.0 map entry %d", ErrSparseMap, i)
		}
		out = append(out, fragment{off, n})
	}
	return out, nil
}

// parseNumeric reads a tar numeric field: octal text padded with spaces
// or NULs, or base-256 when the high bit of the first byte is set.
func parseNumeric(b []byte) (int64, bool) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		var inv byte
		if b[0]&0x40 != 0 {
			inv = 0xff
		}
		var x uint64
		for i, c := range b {
			c ^= inv
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 > 0 {
				return 0, false
			}
			x = x<<8 | uint64(c)
		}
		if x>>63 > 0 {
			return 0, false
		}
		if inv == 0xff {
			return ^int64(x), true
		}
		return int64(x), true
	}
	b = bytes.Trim(b, " \x00")
	if len(b) == 0 {
		return 0, true
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	x, err := strconv.ParseUint(string(b), 8, 63)
	return int64(x), err == nil
}

// checkFragments checks that the regions lie in order inside a file of
// size bytes and add up to data, the bytes the entry holds.
func checkFragments(frags []fragment, size, data int64) error {
	var end, sum int64
	for _, f := range frags {
		if f[0] < end || f[1] < 0 || f[0] > size-f[1] {
			return fmt.Errorf("%w: region %d+%d out of order or past the size %d", ErrSparseMap, f[0], f[1], size)
		}
		end, sum = f[0]+f[1], sum+f[1]
	}
	if sum != data {
		return fmt.Errorf("%w: regions hold %d bytes, the entry %d", ErrSparseMap, sum, data)
	}
	return nil
}

// sparseData is a sparse entry's content, read from the archive's data
// (r) as it is stored: the regions one after the other. writeTo puts
// them at their offsets and never touches the holes; Read gives the
// whole file, holes as zeros, for readers that want a stream.
type sparseData struct {
	r     io.Reader
	frags []fragment
	size  int64
	pos   int64 // logical position of Read
	got   int64 // data bytes read from r
	data  int64 // data bytes in all
}

func newSparseData(r io.Reader, frags []fragment, size, data int64) *sparseData {
	return &sparseData{r: r, frags: frags, size: size, data: data}
}

func (s *sparseData) readData(b []byte) (int, error) {
	n, err := s.r.Read(b)
	s.got += int64(n)
	if err == io.EOF && s.got < s.data {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (s *sparseData) Read(b []byte) (int, error) {
	if s.pos >= s.size {
		return 0, io.EOF
	}
	for len(s.frags) > 0 && s.pos >= s.frags[0][0]+s.frags[0][1] {
		s.frags = s.frags[1:]
	}
	var n int
	var err error
	switch {
	case len(s.frags) == 0:
		n = int(min(int64(len(b)), s.size-s.pos))
		clear(b[:n])
	case s.pos < s.frags[0][0]:
		n = int(min(int64(len(b)), s.frags[0][0]-s.pos))
		clear(b[:n])
	default:
		end := s.frags[0][0] + s.frags[0][1]
		n, err = s.readData(b[:min(int64(len(b)), end-s.pos)])
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	s.pos += int64(n)
	return n, err
}

// writeTo writes the file into fd (empty) and returns its size; the
// caller sets the size with ftruncate.
func (s *sparseData) writeTo(fd int, buf []byte, blk int) (int64, error) {
	if start := s.pos; start != 0 {
		// Partly read already: write the rest as a stream.
		n, err := writeHoley(fd, s, start, buf, blk)
		return start + n, err
	}
	for _, f := range s.frags {
		n, err := writeHoley(fd, io.LimitReader(readerFunc(s.readData), f[1]), f[0], buf, blk)
		if err != nil {
			return 0, err
		}
		if n != f[1] {
			return 0, fmt.Errorf("sparse region at %d: %d bytes of %d: %w", f[0], n, f[1], io.ErrUnexpectedEOF)
		}
	}
	s.frags, s.pos = nil, s.size
	return s.size, nil
}

// drain reads the data no one read.
func (s *sparseData) drain() error {
	if left := s.data - s.got; left > 0 {
		if _, err := io.CopyN(io.Discard, readerFunc(s.readData), left); err != nil {
			return err
		}
	}
	return nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// fragmentReader reads the data regions of a file one after the other:
// a sparse entry's data as the archive holds it.
type fragmentReader struct {
	f     io.ReaderAt
	c     io.Closer
	frags []fragment
	cur   *io.SectionReader
}

func (r *fragmentReader) Read(b []byte) (int, error) {
	for {
		if r.cur != nil {
			n, err := r.cur.Read(b)
			if err == io.EOF {
				r.cur = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		if len(r.frags) == 0 {
			return 0, io.EOF
		}
		f := r.frags[0]
		r.frags = r.frags[1:]
		r.cur = io.NewSectionReader(r.f, f[0], f[1])
	}
}

func (r *fragmentReader) Close() error { return r.c.Close() }
