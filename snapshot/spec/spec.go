// Package spec derives the runtime-spec config.json of a bundle from an
// image config: process, mounts, namespaces and capabilities as Docker
// gives a container, the image's user resolved through the rootfs's
// /etc/passwd and /etc/group (read confined to the rootfs), and the
// rootless and user-namespace forms.
package spec

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-oci/strata/internal/fsx"
	"github.com/strata-oci/strata/snapshot/ids"
	"golang.org/x/sys/unix"
)

// Options tune the generated runtime spec.
type Options struct {
	// Rootless makes a spec an unprivileged user can run: a user
	// namespace mapping the caller to root, no network namespace, /sys
	// bind-mounted, no cgroup mount.
	Rootless bool
	// InNamespace, with Rootless, makes the spec for the user namespace
	// strata enters itself, where a rootless overlay mount lives and so
	// where the bundle runs (`strata mount DIR -- runc run ...`): that
	// namespace already maps the user to root, so the spec asks for no
	// user namespace of its own, and the image's user is kept when the
	// namespace maps it.
	InNamespace bool
	// Namespace, with InNamespace, is that namespace's mapping (as in
	// snapshot.StoreOptions.UserNS): the image's user and groups are kept where it
	// maps them. nil keeps them all.
	Namespace *ids.Map
	// HostUID and HostGID are the caller's IDs outside any user
	// namespace, which a Rootless spec maps to root.
	HostUID, HostGID uint32
	// IDMap runs the container in a user namespace with these mappings
	// (ignored with Rootless, which maps the caller alone).
	IDMap *ids.Map
	// Hostname defaults to "strata".
	Hostname string
}

// Version is the runtime-spec version generated specs declare. They use
// nothing newer than 1.0, and crun (1.8, Debian 12's, and later)
// refuses a spec whose version does not say 1.0.
const Version = "1.0.2"

// ErrUnknownUser means a user or group name is not in the rootfs's
// /etc/passwd or /etc/group.
var ErrUnknownUser = errors.New("no such user or group")

// DefaultPath is the PATH a container gets when its image sets none, as
// Docker gives it.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultPath is the PATH a container gets when its image sets none.
const defaultPath = "PATH=" + DefaultPath

// defaultCaps is the capability set Docker gives containers: enough for
// package managers and daemons that drop privileges, nothing that reaches
// the host.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Generate derives a runtime-spec config.json for the image config
// img, whose root file system is rootfs (used to resolve the image's user
// through its /etc/passwd and /etc/group). The rootfs path in the spec is
// relative: "rootfs", beside config.json.
func Generate(img *ocispec.Image, rootfs string, o Options) (*specs.Spec, error) {
	user, err := ResolveUser(rootfs, img.Config.User)
	if err != nil {
		return nil, err
	}
	s := baseSpec(o.Hostname)
	s.Process.User = user
	s.Process.Args, s.Process.Env, s.Process.Cwd = process(img.Config)
	s.Annotations = annotations(img)
	Adapt(s, o)
	return s, nil
}

// Adapt gives the spec s the form o asks for, whatever form it had:
// rootless (a user namespace mapping the caller to root), rootless for
// strata's own namespace (no user namespace of its own, the user kept
// where that namespace maps it), or, with an IDMap, a user namespace with
// those mappings; with none of these, s is left as it is. Adapting twice
// gives what adapting once gives, so a bundle's config.json can be
// adapted to where it is run. Set the process's user before: a rootless
// form may change it.
func Adapt(s *specs.Spec, o Options) {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	switch {
	case o.Rootless && o.InNamespace:
		u := s.Process.User
		makeRootless(s, o.HostUID, o.HostGID)
		s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
		s.Linux.Namespaces = withoutNamespace(s.Linux.Namespaces, specs.UserNamespace)
		s.Process.User = mappedUser(u, o.Namespace)
	case o.Rootless:
		makeRootless(s, o.HostUID, o.HostGID)
	case !o.IDMap.Empty():
		s.Linux.Namespaces = append(withoutNamespace(s.Linux.Namespaces, specs.UserNamespace), specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
		for _, r := range o.IDMap.UIDs {
			s.Linux.UIDMappings = append(s.Linux.UIDMappings, specs.LinuxIDMapping{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Size})
		}
		for _, r := range o.IDMap.GIDs {
			s.Linux.GIDMappings = append(s.Linux.GIDMappings, specs.LinuxIDMapping{ContainerID: r.ContainerID, HostID: r.HostID, Size: r.Size})
		}
	}
}

// withoutNamespace is ns without the namespaces of type typ.
func withoutNamespace(ns []specs.LinuxNamespace, typ specs.LinuxNamespaceType) []specs.LinuxNamespace {
	var out []specs.LinuxNamespace
	for _, n := range ns {
		if n.Type != typ {
			out = append(out, n)
		}
	}
	return out
}

// process is the container's command, environment and working directory
// from the image config.
func process(c ocispec.ImageConfig) (args, env []string, cwd string) {
	args = append(append([]string{}, c.Entrypoint...), c.Cmd...)
	if len(args) == 0 {
		// runc needs a command; an image without one is meant to get
		// one from the user, who can edit config.json.
		args = []string{"sh"}
	}
	env = append([]string{}, c.Env...)
	hasPath := false
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			hasPath = true
		}
	}
	if !hasPath {
		env = append([]string{defaultPath}, env...)
	}
	cwd = c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	return args, env, cwd
}

// annotations are the image's labels, author, creation time and stop
// signal; nil when it has none.
func annotations(img *ocispec.Image) map[string]string {
	a := map[string]string{}
	for k, v := range img.Config.Labels {
		a[k] = v
	}
	if img.Author != "" {
		a[ocispec.AnnotationAuthors] = img.Author
	}
	if img.Created != nil {
		a[ocispec.AnnotationCreated] = img.Created.UTC().Format("2006-01-02T15:04:05Z07:00")
	}
	if img.Config.StopSignal != "" {
		a["org.opencontainers.image.stopSignal"] = img.Config.StopSignal
	}
	if len(a) == 0 {
		return nil
	}
	return a
}

// baseSpec is what every container gets, as Docker gives it: mounts,
// namespaces, capabilities, masked and read-only paths.
func baseSpec(hostname string) *specs.Spec {
	if hostname == "" {
		hostname = "strata"
	}
	caps := append([]string{}, defaultCaps...)
	return &specs.Spec{
		Version:  Version,
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: hostname,
		Process: &specs.Process{
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		},
		Linux: &specs.Linux{
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
				"/proc/scsi", "/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
}

// mappedUser is u with what the user namespace m does not map dropped:
// the user and group fall back to root, unmapped supplementary groups are
// left out. A nil m maps everyone.
func mappedUser(u specs.User, m *ids.Map) specs.User {
	if m == nil {
		return u
	}
	in := func(rs []ids.Range, id uint32) bool {
		_, ok := ids.Lookup(rs, int(id))
		return ok
	}
	if !in(m.UIDs, u.UID) || !in(m.GIDs, u.GID) {
		return specs.User{}
	}
	out := specs.User{UID: u.UID, GID: u.GID}
	for _, g := range u.AdditionalGids {
		if in(m.GIDs, g) {
			out.AdditionalGids = append(out.AdditionalGids, g)
		}
	}
	return out
}

// makeRootless turns s into a spec an unprivileged user can run: the
// caller is root in a new user namespace, and nothing needs host
// privileges.
func makeRootless(s *specs.Spec, uid, gid uint32) {
	ns := withoutNamespace(withoutNamespace(s.Linux.Namespaces, specs.NetworkNamespace), specs.UserNamespace)
	s.Linux.Namespaces = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uid, Size: 1}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: gid, Size: 1}}
	// Only root is mapped: the image's user cannot exist in the
	// namespace.
	s.Process.User = specs.User{}
	var mounts []specs.Mount
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/sys/fs/cgroup":
			continue
		case "/sys":
			m = specs.Mount{Destination: "/sys", Type: "none", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		case "/dev/pts":
			var opts []string
			for _, o := range m.Options {
				if o != "gid=5" {
					opts = append(opts, o)
				}
			}
			m.Options = opts
		}
		mounts = append(mounts, m)
	}
	s.Mounts = mounts
	s.Linux.Resources = nil
}

// ResolveUser turns a user as an image config or docker run -u gives it
// ("", name, uid, name:group, uid:gid...) into IDs, reading the rootfs's
// /etc/passwd and /etc/group confined to the rootfs. A uid passwd does not
// list gets group 0; a name it does not list is an error. Supplementary
// groups are, as Docker gives them, the primary group and, unless a group
// is given, the groups listing the user by name.
func ResolveUser(rootfs, spec string) (specs.User, error) {
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	passwd, err := readRootfsFile(rootfs, "etc/passwd")
	if err != nil {
		return specs.User{}, err
	}
	groups, err := readRootfsFile(rootfs, "etc/group")
	if err != nil {
		return specs.User{}, err
	}
	u, name, err := lookupUser(passwd, userPart)
	if err != nil {
		return specs.User{}, err
	}
	if hasGroup {
		if u.GID, err = lookupGroup(groups, groupPart); err != nil {
			return specs.User{}, err
		}
	}
	// As docker gives them: the primary group, then (without an
	// explicit group) the groups that list the user.
	u.AdditionalGids = []uint32{u.GID}
	if name != "" && !hasGroup {
		u.AdditionalGids = append(u.AdditionalGids, memberOf(groups, name, u.GID)...)
	}
	return u, nil
}

// Home is the home directory /etc/passwd of the rootfs gives uid, or "/"
// when it lists none: the HOME a container's process gets when its
// environment sets none, as runc gives it.
func Home(rootfs string, uid uint32) string {
	passwd, err := readRootfsFile(rootfs, "etc/passwd")
	if err != nil {
		return "/"
	}
	id := strconv.FormatUint(uint64(uid), 10)
	for _, f := range passwd {
		if len(f) >= 6 && f[2] == id && f[5] != "" {
			return f[5]
		}
	}
	return "/"
}

// lookupUser finds the image's user (a name or a uid) in the passwd
// entries, and returns it with its primary group and its name ("" for a
// uid passwd does not list).
func lookupUser(passwd [][]string, user string) (specs.User, string, error) {
	var u specs.User
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		u.UID = uint32(n)
		for _, f := range passwd {
			if len(f) >= 4 && f[2] == user {
				if g, err := strconv.ParseUint(f[3], 10, 32); err == nil {
					u.GID = uint32(g)
				}
				return u, f[0], nil
			}
		}
		return u, "", nil
	}
	for _, f := range passwd {
		if len(f) >= 4 && f[0] == user {
			uid, err1 := strconv.ParseUint(f[2], 10, 32)
			gid, err2 := strconv.ParseUint(f[3], 10, 32)
			if err1 != nil || err2 != nil {
				return u, "", fmt.Errorf("user %q: bad /etc/passwd entry", user)
			}
			u.UID, u.GID = uint32(uid), uint32(gid)
			return u, f[0], nil
		}
	}
	return u, "", fmt.Errorf("user %q: %w in the image's /etc/passwd", user, ErrUnknownUser)
}

// lookupGroup finds the image's group (a name or a gid) in the group
// entries.
func lookupGroup(groups [][]string, group string) (uint32, error) {
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uint32(n), nil
	}
	for _, f := range groups {
		if len(f) >= 3 && f[0] == group {
			g, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("group %q: bad /etc/group entry", group)
			}
			return uint32(g), nil
		}
	}
	return 0, fmt.Errorf("group %q: %w in the image's /etc/group", group, ErrUnknownUser)
}

// memberOf lists the groups, other than primary, whose entries list the
// user name, as Docker gives them.
func memberOf(groups [][]string, name string, primary uint32) []uint32 {
	var out []uint32
	for _, f := range groups {
		if len(f) < 4 {
			continue
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil || uint32(g) == primary {
			continue
		}
		for _, m := range strings.Split(f[3], ",") {
			if m == name {
				out = append(out, uint32(g))
				break
			}
		}
	}
	return out
}

// readRootfsFile reads a colon-separated database (passwd, group) from
// the rootfs, resolving symlinks inside it; a missing file is empty.
func readRootfsFile(rootfs, name string) ([][]string, error) {
	t, err := fsx.OpenTree(rootfs)
	if err != nil {
		return nil, err
	}
	defer t.Close()
	// O_NONBLOCK: a hostile image may put a fifo there.
	fd, err := t.Open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EACCES) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, nil
	}
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, nil
}
