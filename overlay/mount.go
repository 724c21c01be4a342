package overlay

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Options describe an overlay mount.
type Options struct {
	// Lower lists the layer directories, top-most first (the order of
	// overlay's lowerdir option). At least one is needed.
	Lower []string
	// Upper and Work are the writable directory pair, on one filesystem.
	// With neither, the mount is read-only.
	Upper, Work string
	// Xattrs is the form the layers and the upper directory use; User
	// mounts with userxattr.
	Xattrs Xattrs
}

// maxPathArg is the longest string fsconfig accepts (the kernel copies at
// most 256 bytes, including the terminating NUL).
const maxPathArg = 255

// Mount mounts an overlay of o at target. It uses the new mount API and
// passes each layer on its own (lowerdir+, Linux 6.8), so the number and
// length of layer paths are not bound by mount(2)'s one-page option
// string; on older kernels it falls back to mount(2), replacing paths
// with short /proc/self/fd names when the list would not fit.
// redirect_dir, metacopy and index are always off: an upper directory
// must be a self-contained diff and layers are shared between mounts.
// redirect_dir is given as nofollow, the form of off that also never
// follows a redirect (plain "off" means "follow" on kernels built with
// redirect_always_follow, and userxattr refuses that).
func Mount(target string, o Options) error {
	if len(o.Lower) == 0 {
		return fmt.Errorf("mount overlay at %s: no lower layers", target)
	}
	if (o.Upper == "") != (o.Work == "") {
		return fmt.Errorf("mount overlay at %s: upper and work directories go together", target)
	}
	var err error
	if kernelAtLeast(6, 8) {
		err = mountNew(target, o)
	} else {
		err = errOldKernel
	}
	if errors.Is(err, errOldKernel) {
		err = mountLegacy(target, o)
	}
	if err != nil {
		return fmt.Errorf("mount overlay of %d layers at %s: %w", len(o.Lower), target, err)
	}
	return nil
}

// kernelAtLeast says whether the running kernel's release is at least
// major.minor. Before Linux 6.5 overlay took fsconfig options through a
// legacy shim that accepts any key and fails only at create, so the
// version, not a probe, decides whether lowerdir+ can be used.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return releaseAtLeast(unix.ByteSliceToString(u.Release[:]), major, minor)
}

func releaseAtLeast(release string, major, minor int) bool {
	var ma, mi int
	if n, _ := fmt.Sscanf(release, "%d.%d", &ma, &mi); n != 2 {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

// errOldKernel means the kernel lacks the new mount API or lowerdir+.
var errOldKernel = errors.New("kernel without lowerdir+")

func mountNew(target string, o Options) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) {
		return errOldKernel
	}
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	fail := func(what string, err error) error {
		if msg := fsLog(fsfd); msg != "" {
			return fmt.Errorf("%s: %w (%s)", what, err, msg)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	for i, l := range o.Lower {
		if err := setDir(fsfd, "lowerdir+", l); err != nil {
			if i == 0 && errors.Is(err, unix.EINVAL) && len(l) <= maxPathArg {
				if msg := fsLog(fsfd); strings.Contains(msg, "nknown parameter") {
					return errOldKernel
				}
			}
			return fail("layer "+l, err)
		}
	}
	if o.Upper != "" {
		if err := setDir(fsfd, "upperdir", o.Upper); err != nil {
			return fail("upper directory "+o.Upper, err)
		}
		if err := setDir(fsfd, "workdir", o.Work); err != nil {
			return fail("work directory "+o.Work, err)
		}
	}
	for _, kv := range [][2]string{{"redirect_dir", "nofollow"}, {"metacopy", "off"}, {"index", "off"}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return fail(kv[0]+"="+kv[1], err)
		}
	}
	if o.Xattrs == User {
		if err := unix.FsconfigSetFlag(fsfd, "userxattr"); err != nil {
			return fail("userxattr", err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fail("create", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fail("fsmount", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach mount: %w", err)
	}
	return nil
}

// setDir passes a directory to fsconfig: by name when it fits and holds
// nothing overlay might unescape (it does for upperdir and workdir, not
// for lowerdir+), else by file descriptor, else by its /proc/self/fd
// name.
func setDir(fsfd int, key, dir string) error {
	if len(dir) <= maxPathArg && !strings.ContainsAny(dir, `\,:`) {
		return unix.FsconfigSetString(fsfd, key, dir)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	// Overlay resolves each directory while the option is set, so the
	// descriptor is needed only for this call.
	defer unix.Close(fd)
	if err := unix.FsconfigSetFd(fsfd, key, fd); err == nil {
		return nil
	}
	fsLog(fsfd) // drop the message of the refused attempt
	return unix.FsconfigSetString(fsfd, key, "/proc/self/fd/"+strconv.Itoa(fd))
}

// fsLog drains the messages a filesystem context logged, which say why
// the kernel refused an option.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		m := strings.TrimSpace(string(buf[:n]))
		if len(m) > 2 && m[1] == ' ' {
			m = m[2:]
		}
		msgs = append(msgs, m)
	}
	return strings.Join(msgs, "; ")
}

// mountLegacy mounts with mount(2) and a comma-separated option string.
func mountLegacy(target string, o Options) error {
	opts := func(lowers []string) string {
		var b strings.Builder
		b.WriteString("lowerdir=")
		for i, l := range lowers {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(escapeOpt(l))
		}
		if o.Upper != "" {
			b.WriteString(",upperdir=" + escapeOpt(o.Upper) + ",workdir=" + escapeOpt(o.Work))
		}
		b.WriteString(",redirect_dir=nofollow,metacopy=off,index=off")
		if o.Xattrs == User {
			b.WriteString(",userxattr")
		}
		return b.String()
	}
	data := opts(o.Lower)
	if len(data) >= os.Getpagesize() {
		short := make([]string, len(o.Lower))
		for i, l := range o.Lower {
			fd, err := unix.Open(l, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				return &os.PathError{Op: "open layer", Path: l, Err: err}
			}
			defer unix.Close(fd)
			short[i] = "/proc/self/fd/" + strconv.Itoa(fd)
		}
		data = opts(short)
		if len(data) >= os.Getpagesize() {
			return fmt.Errorf("%d layers do not fit in mount(2)'s options on this kernel (Linux 6.8 lifts the limit)", len(o.Lower))
		}
	}
	if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
		return fmt.Errorf("mount(2): %w", err)
	}
	return nil
}

// escapeOpt escapes the characters overlay's option parser splits on.
func escapeOpt(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`)
	return r.Replace(s)
}

// Unmount unmounts the overlay at target; ErrNotMounted when there is
// none.
func Unmount(target string) error {
	ok, err := IsMounted(target)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("unmount %s: %w", target, ErrNotMounted)
	}
	if err := unix.Unmount(target, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

// IsMounted says whether target is the root of an overlay mount.
func IsMounted(target string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, target, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, fmt.Errorf("check mount %s: %w", target, err)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, fmt.Errorf("check mount %s: kernel does not report mount roots", target)
	}
	if stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return false, fmt.Errorf("check mount %s: %w", target, err)
	}
	return st.Type == unix.OVERLAYFS_SUPER_MAGIC, nil
}
