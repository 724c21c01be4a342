package remote

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// LocationCache remembers, per registry, which repositories hold each
// blob: every blob a pull fetched or found, and every blob a push sent,
// found or mounted, is recorded with its registry, repository and time.
// A push asks the registry to mount a blob from the repositories recorded
// for it (the most recent first) before uploading it, as containers/image
// does with its blob-info cache, so pushing an image to a second
// repository of a registry sends no layer again.
//
// The cache is one small text file, read once when first needed and
// rewritten by Flush: the records of this process are merged with what
// other processes wrote meanwhile (under a lock file beside it), the
// oldest dropped beyond MaxLocations, and the file replaced by a rename,
// so a crash leaves the old file or the new one. A missing or damaged
// file is an empty cache: it is a hint, never a source of content.
type LocationCache struct {
	path string

	mu      sync.Mutex
	loaded  bool
	entries map[location]int64 // -> last seen, Unix seconds
	added   map[location]int64
	now     func() time.Time
}

// location is a blob in a repository of a registry.
type location struct {
	host, repo string
	d          digest.Digest
}

// MaxLocations bounds the cache file: beyond it, the records seen least
// recently go (a record is some 120 bytes).
const MaxLocations = 20000

// maxMountTries is how many repositories a push asks to mount one blob
// from before it uploads the blob.
const maxMountTries = 3

// locationsHeader is the first line of the file, with its version.
const locationsHeader = "strata-blob-locations 1"

// OpenLocationCache returns the cache kept in file path (cmd/strata
// uses $XDG_CACHE_HOME/strata/blob-locations). Nothing is read until a
// push or pull needs it; the file and its directory are made by Flush.
func OpenLocationCache(path string) *LocationCache {
	return &LocationCache{path: path, now: time.Now}
}

// WithLocationCache records where blobs are in c and mounts pushed blobs
// from the repositories c knows hold them.
func WithLocationCache(c *LocationCache) Option {
	return func(o *options) { o.locations = c }
}

// load reads the file once. Lines that do not parse are skipped.
func (c *LocationCache) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	c.entries = map[location]int64{}
	c.added = map[location]int64{}
	b, err := os.ReadFile(c.path)
	if err != nil {
		return
	}
	parseLocations(b, c.entries)
}

// parseLocations adds the records of a cache file to m, keeping the most
// recent time of each.
func parseLocations(b []byte, m map[location]int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 4096)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if line != locationsHeader {
				return // another version: start afresh
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		t, err := strconv.ParseInt(f[0], 10, 64)
		d := digest.Digest(f[3])
		if err != nil || d.Validate() != nil {
			continue
		}
		k := location{host: f[1], repo: f[2], d: d}
		if t > m[k] {
			m[k] = t
		}
	}
}

// record notes that repo of registry host holds d.
func (c *LocationCache) record(host, repo string, d digest.Digest) {
	if c == nil || host == "" || repo == "" || d.Validate() != nil ||
		strings.ContainsAny(host+repo, " \t\n") {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.load()
	k := location{host: host, repo: repo, d: d}
	t := c.now().Unix()
	c.entries[k] = t
	c.added[k] = t
}

// candidates lists the repositories of host that hold d, besides
// exclude, the most recently seen first.
func (c *LocationCache) candidates(host string, d digest.Digest, exclude string) []string {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.load()
	type cand struct {
		repo string
		t    int64
	}
	var cs []cand
	for k, t := range c.entries {
		if k.d == d && k.host == host && k.repo != exclude {
			cs = append(cs, cand{k.repo, t})
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].t != cs[j].t {
			return cs[i].t > cs[j].t
		}
		return cs[i].repo < cs[j].repo
	})
	var out []string
	for _, x := range cs {
		out = append(out, x.repo)
	}
	return out
}

// Flush merges what this process recorded into the file. Nothing is
// written when nothing was recorded.
func (c *LocationCache) Flush() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.added) == 0 {
		return nil
	}
	dir := filepath.Dir(c.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("blob location cache: %w", err)
	}
	lf, err := os.OpenFile(c.path+".lock", os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("blob location cache: %w", err)
	}
	defer lf.Close()
	if err := fsx.Flock(lf, unix.LOCK_EX); err != nil {
		return fmt.Errorf("blob location cache: lock %s: %w", lf.Name(), err)
	}
	// What other processes wrote since this one read the file, plus ours.
	merged := map[location]int64{}
	if b, err := os.ReadFile(c.path); err == nil {
		parseLocations(b, merged)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob location cache: %w", err)
	}
	for k, t := range c.added {
		if t > merged[k] {
			merged[k] = t
		}
	}
	if err := fsx.WriteFile(c.path, formatLocations(merged, MaxLocations), 0o600); err != nil {
		return fmt.Errorf("blob location cache: %w", err)
	}
	c.entries, c.added = merged, map[location]int64{}
	return nil
}

// formatLocations writes at most max records, the most recent, sorted so
// the file is stable.
func formatLocations(m map[location]int64, max int) []byte {
	type rec struct {
		k location
		t int64
	}
	rs := make([]rec, 0, len(m))
	for k, t := range m {
		rs = append(rs, rec{k, t})
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].t != rs[j].t {
			return rs[i].t > rs[j].t
		}
		a, b := rs[i].k, rs[j].k
		if a.host != b.host {
			return a.host < b.host
		}
		if a.repo != b.repo {
			return a.repo < b.repo
		}
		return a.d < b.d
	})
	if len(rs) > max {
		rs = rs[:max]
	}
	var buf bytes.Buffer
	buf.WriteString(locationsHeader + "\n")
	for _, r := range rs {
		fmt.Fprintf(&buf, "%d %s %s %s\n", r.t, r.k.host, r.k.repo, r.k.d)
	}
	return buf.Bytes()
}
