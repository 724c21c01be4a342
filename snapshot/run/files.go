package run

import (
	"errors"
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/internal/fsx"
	"golang.org/x/sys/unix"
)

// networkMounts writes the container's /etc/hostname, /etc/hosts and
// (with o.ResolvConf) /etc/resolv.conf into the run's directory and
// returns their bind mounts; none without o.NetworkFiles.
func (c *container) networkMounts(hostname string, o Options) ([]specs.Mount, error) {
	if !o.NetworkFiles {
		return nil, nil
	}
	files := map[string][]byte{
		"hosts": []byte("127.0.0.1\tlocalhost\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\n" +
			"ff00::0\tip6-mcastprefix\n" +
			"ff02::1\tip6-allnodes\n" +
			"ff02::2\tip6-allrouters\n"),
	}
	if hostname != "" {
		files["hostname"] = []byte(hostname + "\n")
		files["hosts"] = append(files["hosts"], "127.0.1.1\t"+hostname+"\n"...)
	}
	if o.ResolvConf != nil {
		files["resolv.conf"] = o.ResolvConf
	}
	var out []specs.Mount
	for _, name := range []string{"hostname", "hosts", "resolv.conf"} {
		b, ok := files[name]
		if !ok {
			continue
		}
		p := c.path(name)
		// Readable by every user of the container.
		if err := fsx.WriteFile(p, b, 0o644); err != nil {
			return nil, fmt.Errorf("run state: %w", err)
		}
		out = append(out, specs.Mount{Destination: "/etc/" + name, Type: "bind", Source: p, Options: []string{"rbind", "rw"}})
	}
	return out, nil
}

// stub is a name in the rootfs that a mount needs and the rootfs lacks:
// the runtime creates it (an empty directory or file) to mount on.
type stub struct {
	name string // relative to the rootfs
	// parent's times, put back when the stub goes.
	parentTimes [2]unix.Timespec
	top         bool // the first missing name on its path
}

// stubs are the names runtimes will create in a rootfs for a run.
type stubs struct {
	rootfs string
	list   []stub
}

// findStubs lists the names the runtime will create in the rootfs of s
// to mount on: every missing name on the way to each mount destination.
func findStubs(s *specs.Spec) (*stubs, error) {
	t, err := fsx.OpenTree(s.Root.Path)
	if err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	defer t.Close()
	st := &stubs{rootfs: s.Root.Path}
	seen := map[string]bool{}
	for _, m := range s.Mounts {
		parts := strings.Split(strings.Trim(path.Clean("/"+m.Destination), "/"), "/")
		missing := false
		for i := range parts {
			name := strings.Join(parts[:i+1], "/")
			if name == "" || seen[name] {
				continue
			}
			if !missing {
				fd, err := t.Open(name, unix.O_PATH, 0)
				if err == nil {
					unix.Close(fd)
					continue
				}
				if !errors.Is(err, unix.ENOENT) {
					// A name that is not a directory, or cannot be
					// looked at: the runtime will fail or cope; it
					// makes nothing here.
					break
				}
				missing = true
				sb := stub{name: name, top: true}
				if pfd, err := t.Dir(path.Dir(name)); err == nil {
					var fst unix.Stat_t
					if unix.Fstat(pfd, &fst) == nil {
						sb.parentTimes = [2]unix.Timespec{fst.Atim, fst.Mtim}
					}
					unix.Close(pfd)
				}
				seen[name] = true
				st.list = append(st.list, sb)
				continue
			}
			seen[name] = true
			st.list = append(st.list, stub{name: name})
		}
	}
	return st, nil
}

// clean removes, deepest first, the stubs the runtime made that are
// still empty, and puts back the times of the directories they were made
// in.
func (st *stubs) clean() {
	if len(st.list) == 0 {
		return
	}
	t, err := fsx.OpenTree(st.rootfs)
	if err != nil {
		return
	}
	defer t.Close()
	for i := len(st.list) - 1; i >= 0; i-- {
		sb := st.list[i]
		pfd, err := t.Dir(path.Dir(sb.name))
		if err != nil {
			continue
		}
		base := path.Base(sb.name)
		var fst unix.Stat_t
		removed := false
		if unix.Fstatat(pfd, base, &fst, unix.AT_SYMLINK_NOFOLLOW) == nil {
			switch fst.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				// Fails, as it should, when not empty.
				removed = unix.Unlinkat(pfd, base, unix.AT_REMOVEDIR) == nil
			case unix.S_IFREG:
				if fst.Size == 0 {
					removed = unix.Unlinkat(pfd, base, 0) == nil
				}
			}
		}
		if removed && sb.top && sb.parentTimes[1] != (unix.Timespec{}) {
			ts := sb.parentTimes
			_ = unix.UtimesNanoAt(pfd, ".", ts[:], 0)
		}
		unix.Close(pfd)
	}
}
