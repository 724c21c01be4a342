package layer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
	"golang.org/x/sys/unix"
)

// Extract applies the layer stream s on the directory fsDir, records
// its tar-split metadata (TarSplitFile, and the files of entries a later
// entry replaced in ShadowDir) in the directory recDir, and checks the
// uncompressed stream against its diffID: one pass, the decompressing
// and hashing on s's goroutines. s is stopped when Extract returns. The
// files it writes in recDir are not synced.
func Extract(ctx context.Context, fsDir, recDir string, s *Stream, opts ApplyOptions, files Files) error {
	defer s.Close()
	tsf, err := os.OpenFile(filepath.Join(recDir, TarSplitFile), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer tsf.Close()
	// Metadata is small next to the layer: the fastest level keeps its
	// compression off the extraction's critical path.
	zw, _ := gzip.NewWriterLevel(tsf, gzip.BestSpeed)
	bw := bufio.NewWriterSize(zw, 256*1024)
	applyErr := applyRecording(ctx, fsDir, s, opts, files, newPacker(bw), filepath.Join(recDir, ShadowDir))
	// The hash is complete once the stream's goroutines are done.
	s.Close()
	if applyErr != nil {
		return applyErr
	}
	if got := s.digest(); got != s.diffID {
		return fmt.Errorf("%w: uncompressed stream is %s, config says %s", ErrDiffIDMismatch, got, s.diffID)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("tar-split: %w", err)
	}
	return tsf.Close()
}

// record is one line of tarsplit.json.gz: a tar-split entry, and for a
// sparse file the regions of the file its data fills (the archive holds
// them one after the other, holes left out). Older snapshots have no
// sparse field; tar-split itself ignores it.
type record struct {
	storage.Entry
	Sparse []fragment `json:"sparse,omitempty"`
}

// packer writes tar-split entries as JSON lines. Unlike tar-split's own
// packer it accepts a name twice: layers may legally repeat an entry.
type packer struct {
	enc *json.Encoder
	pos int
}

func newPacker(w io.Writer) *packer { return &packer{enc: json.NewEncoder(w)} }

func (p *packer) AddEntry(e storage.Entry) (int, error) {
	e.Position = p.pos
	if err := p.enc.Encode(e); err != nil {
		return -1, err
	}
	p.pos++
	return e.Position, nil
}

// addFile records a file entry with its sparse map (nil: not sparse).
func (p *packer) addFile(e storage.Entry, sparse []fragment) error {
	if sparse == nil {
		_, err := p.AddEntry(e)
		return err
	}
	e.Position = p.pos
	if err := p.enc.Encode(record{Entry: e, Sparse: sparse}); err != nil {
		return err
	}
	p.pos++
	return nil
}

// Rebuild writes the layer Extract recorded in recDir, uncompressed and
// byte for byte as it was extracted into fsDir, to w: the tar-split
// metadata gives headers and padding, the tree the file contents.
func Rebuild(w io.Writer, fsDir, recDir string) error {
	f, err := os.Open(filepath.Join(recDir, TarSplitFile))
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", TarSplitFile, err)
	}
	defer zr.Close()
	rb, err := newRebuilder(fsDir, recDir, zr)
	if err != nil {
		return err
	}
	defer rb.close()
	if err := asm.WriteOutputTarStream(rb, rb, w); err != nil {
		return fmt.Errorf("rebuild layer: %w", err)
	}
	return nil
}

// rebuilder is both halves tar-split's assembler asks for: the unpacker
// of tarsplit.json.gz and the getter of file contents. The assembler
// asks for the contents of each file entry with data right after the
// unpacker returned it, so the rebuilder knows which entry a name
// stands for: a file that a later entry replaced is served from the
// shadow directory by its number, a sparse file as its data regions.
type rebuilder struct {
	dec    *json.Decoder
	fs     *fsx.Tree
	shadow *fsx.Tree
	// kept lists the entry numbers the shadow directory holds.
	kept   map[int]bool
	seq    int
	sparse []fragment
}

func newRebuilder(fsDir, recDir string, r io.Reader) (*rebuilder, error) {
	t, err := fsx.OpenTree(fsDir)
	if err != nil {
		return nil, err
	}
	rb := &rebuilder{dec: json.NewDecoder(r), fs: t, seq: -1}
	names, err := os.ReadDir(filepath.Join(recDir, ShadowDir))
	if errors.Is(err, fs.ErrNotExist) {
		return rb, nil
	}
	if err != nil {
		t.Close()
		return nil, err
	}
	if rb.shadow, err = fsx.OpenTree(filepath.Join(recDir, ShadowDir)); err != nil {
		t.Close()
		return nil, err
	}
	rb.kept = map[int]bool{}
	for _, n := range names {
		if v, err := strconv.Atoi(n.Name()); err == nil {
			rb.kept[v] = true
		}
	}
	return rb, nil
}

func (rb *rebuilder) close() {
	rb.fs.Close()
	if rb.shadow != nil {
		rb.shadow.Close()
	}
}

func (rb *rebuilder) Next() (*storage.Entry, error) {
	var rec record
	if err := rb.dec.Decode(&rec); err != nil {
		return nil, err
	}
	if rec.Type == storage.FileType {
		rb.seq++
		rb.sparse = rec.Sparse
	}
	return &rec.Entry, nil
}

func (rb *rebuilder) Get(name string) (io.ReadCloser, error) {
	var (
		f   *os.File
		err error
	)
	if rb.kept[rb.seq] {
		// A symlink there says where in fs/ the file is: its name led
		// through a symlink that a later entry may have changed.
		buf := make([]byte, unix.PathMax)
		if n, err := unix.Readlinkat(rb.shadow.Fd(), strconv.Itoa(rb.seq), buf); err == nil {
			if f, err = openClean(rb.fs, string(buf[:n])); err != nil {
				return nil, fmt.Errorf("%s (entry %d): %w", name, rb.seq, err)
			}
			return rb.wrap(f), nil
		}
		if f, err = rb.shadow.OpenRegular(strconv.Itoa(rb.seq)); err != nil {
			return nil, fmt.Errorf("%s (entry %d, replaced later in the layer): %w", name, rb.seq, err)
		}
	} else if f, err = openClean(rb.fs, name); err != nil {
		return nil, err
	}
	return rb.wrap(f), nil
}

// wrap reads a sparse entry's file as the archive holds it.
func (rb *rebuilder) wrap(f *os.File) io.ReadCloser {
	if rb.sparse != nil {
		return &fragmentReader{f: f, c: f, frags: rb.sparse}
	}
	return f
}

// openClean opens the regular file a tar entry names in the tree t.
func openClean(t *fsx.Tree, name string) (*os.File, error) {
	n, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	return t.OpenRegular(n)
}
