package overlay

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountedUpper returns the upper directory of the overlay mounted at target,
// as the kernel shows it in /proc/self/mountinfo (the topmost mount
// there), or "" for an overlay without one. ErrNotMounted when no overlay
// is mounted at target.
func mountedUpper(target string) (string, error) {
	abs, err := filepath.Abs(target)
	if err != nil {
		return "", err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	upper, found, err := upperIn(f, abs)
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	if !found {
		return "", fmt.Errorf("%s: %w", target, ErrNotMounted)
	}
	return upper, nil
}

// upperIn reads mountinfo lines from r and returns the upper directory of
// the last overlay mounted at target.
func upperIn(r io.Reader, target string) (upper string, found bool, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m, ok := parseMountinfo(sc.Text())
		if !ok || m.point != target {
			continue
		}
		// A later mount on the same point hides this one, whatever it is.
		found = m.fstype == "overlay"
		upper = ""
		if found {
			upper = m.option("upperdir")
		}
	}
	return upper, found, sc.Err()
}

// mountEntry is what strata reads of one line of mountinfo.
type mountEntry struct {
	point, fstype string
	super         []string // super options, each unescaped
}

func (m mountEntry) option(key string) string {
	for _, o := range m.super {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v
		}
	}
	return ""
}

// parseMountinfo parses one line of /proc/PID/mountinfo (proc(5)): ID,
// parent ID, major:minor, root, mount point, options, optional fields up
// to "-", then the filesystem type, the source and the super options.
// Spaces, tabs, newlines, backslashes (and, in overlay's options, commas)
// are octal escapes there, so splitting on spaces and commas is safe.
func parseMountinfo(line string) (mountEntry, bool) {
	f := strings.Split(line, " ")
	if len(f) < 10 {
		return mountEntry{}, false
	}
	sep := -1
	for i := 6; i < len(f); i++ {
		if f[i] == "-" {
			sep = i
			break
		}
	}
	if sep < 0 || len(f) < sep+4 {
		return mountEntry{}, false
	}
	m := mountEntry{point: unescapeOctal(f[4]), fstype: unescapeOctal(f[sep+1])}
	for _, o := range strings.Split(f[sep+3], ",") {
		m.super = append(m.super, unescapeOctal(o))
	}
	return m, true
}

// unescapeOctal undoes the kernel's \ooo escapes; anything else is kept.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
