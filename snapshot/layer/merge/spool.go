package merge

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// spool keeps contents read before their turn in the output: small ones
// in memory up to a bound, the rest in an unlinked temporary file. Space
// is given back when the spool closes.
type spool struct {
	dir  string
	buf  []byte
	mem  map[spoolKey][]byte
	used int64
	f    *os.File
	end  int64
	at   map[spoolKey]span
}

type spoolKey struct{ layer, entry int }

type span struct{ off, size int64 }

// What the spool keeps in memory: at most spoolMem bytes, in contents of
// at most spoolMemItem bytes.
const (
	spoolMem     = 8 << 20
	spoolMemItem = 256 << 10
)

// put reads size bytes of r into the spool under k.
func (s *spool) put(k spoolKey, r io.Reader, size int64) error {
	if size <= spoolMemItem && s.used+size <= spoolMem {
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			return err
		}
		if s.mem == nil {
			s.mem = map[spoolKey][]byte{}
		}
		s.mem[k] = b
		s.used += size
		return nil
	}
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, ".strata-merge-spool-*")
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		// Nobody else needs its name, and nothing is left behind when
		// the process dies.
		os.Remove(f.Name())
		s.f, s.at = f, map[spoolKey]span{}
	}
	if _, err := s.f.Seek(s.end, io.SeekStart); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	n, err := io.CopyBuffer(s.f, io.LimitReader(r, size), s.buf)
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.at[k] = span{s.end, size}
	s.end += size
	return nil
}

// take returns the content kept under k, if any, and forgets it.
func (s *spool) take(k spoolKey) (io.Reader, bool) {
	if b, ok := s.mem[k]; ok {
		delete(s.mem, k)
		s.used -= int64(len(b))
		return bytes.NewReader(b), true
	}
	if sp, ok := s.at[k]; ok {
		delete(s.at, k)
		return io.NewSectionReader(s.f, sp.off, sp.size), true
	}
	return nil, false
}

func (s *spool) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}
