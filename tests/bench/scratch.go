package main

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Runs' trees are not deleted after each run but moved to a trash
// directory, emptied when space runs low (and with the scratch tree at
// the end, after which a suite started soon waits; see settle). On ext4 without a journal (this project's CI disks) the inode
// allocator passes over every inode freed in the last minute, one buffer
// lookup each, from the start of the group, on every allocation: after
// the previous run's tens of thousands of files were deleted, a run spent
// most of its time there (perf: find_inode_bit, recently_deleted), and
// paid in proportion to the files it creates, not its own work (a cold
// overlay unpack took 2.5 s after no deletion, 18-20 s after one).
const (
	trashDir = "trash"
	// settleWait is how long after a large deletion the allocator still
	// remembers the freed inodes: ext4's RECENTCY_MIN (60 s) plus
	// RECENTCY_DIRTY (300 s) while their inode table block is dirty, as
	// it is again as soon as new files take inodes next to them.
	settleWait = 361 * time.Second
	// removedMark, in the data directory, holds the time the last scratch
	// tree was removed, so that a suite started right after another
	// waits for the same reason.
	removedMark = "scratch-removed"
)

// markRemoval records that a large tree was just removed under dataDir.
func markRemoval(dataDir string) {
	syscall.Sync()
	_ = os.WriteFile(filepath.Join(dataDir, removedMark), []byte(time.Now().UTC().Format(time.RFC3339)), 0o644)
}

// settle waits until settleWait has passed since the last recorded
// removal under dataDir.
func settle(dataDir string, logf func(string, ...any)) {
	b, err := os.ReadFile(filepath.Join(dataDir, removedMark))
	if err != nil {
		return
	}
	at, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	if left := time.Until(at.Add(settleWait)); left > 0 {
		logf("waiting %s: the file system still remembers the inodes removed at %s (see settleWait)", left.Round(time.Second), at.Format(time.TimeOnly))
		time.Sleep(left)
	}
}

// discard moves a finished run's tree into the trash, or removes it when
// it cannot.
func (r *runner) discard(dir string) error {
	detachMountsUnder(dir)
	trash := filepath.Join(r.Scratch, trashDir)
	if err := os.MkdirAll(trash, 0o755); err == nil {
		if err := os.Rename(dir, filepath.Join(trash, filepath.Base(dir))); err == nil {
			return nil
		}
	}
	return removeAll(dir)
}

// purgeTrashIfLow empties the trash when the scratch file system has less
// than 8 GiB plus a tenth of its size free, then waits out r.PurgeWait so
// that the deletion is not charged to the next run.
func (r *runner) purgeTrashIfLow() {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(r.Scratch, &fs); err != nil {
		return
	}
	free, total := int64(fs.Bavail)*fs.Bsize, int64(fs.Blocks)*fs.Bsize
	if free >= 8<<30+total/10 {
		return
	}
	trash := filepath.Join(r.Scratch, trashDir)
	if ents, err := os.ReadDir(trash); err != nil || len(ents) == 0 {
		return
	}
	r.Logf("  scratch space low (%s free): emptying the trash, then waiting %s", fmtBytes(free), r.PurgeWait)
	if err := removeAll(trash); err != nil {
		r.Logf("  remove %s: %v", trash, err)
	}
	syscall.Sync()
	time.Sleep(r.PurgeWait)
}

// removeAll removes a scratch tree; mounts left inside it by a failed
// run are detached first so the removal cannot reach into a lower layer.
func removeAll(dir string) error {
	detachMountsUnder(dir)
	err := os.RemoveAll(dir)
	if err != nil && errors.Is(err, syscall.EBUSY) {
		detachMountsUnder(dir)
		err = os.RemoveAll(dir)
	}
	return err
}

// detachMountsUnder lazily unmounts every mount point at or below dir,
// deepest first.
func detachMountsUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var pts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		p := unescapeMount(f[4])
		if p == dir || strings.HasPrefix(p, dir+"/") {
			pts = append(pts, p)
		}
	}
	sort.Slice(pts, func(i, j int) bool { return len(pts[i]) > len(pts[j]) })
	for _, p := range pts {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal3(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal3(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	v := 0
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	if v > 255 {
		return 0, false
	}
	return byte(v), true
}
