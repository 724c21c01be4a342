package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/layout/mutate"
	"github.com/strata-oci/strata/layout/transport"
)

// imageChange is what mutate, append and rebase share: an image to
// change (SRC), where the result goes (DST, or nothing: in place), and
// the change.
type imageChange struct {
	verb string // for messages: "mutated", "appended to", "rebased"
	src  string
	dst  string
	// platforms are the --platform flags: the platforms changed, and for
	// a docker-archive destination the one written.
	platforms []ocispec.Platform
	change    mutate.Change
	out       io.Writer
}

// transportPrefixes are the names SRC and DST may start with to leave the
// layout; registries are reached with pull, push and copy instead.
var transportPrefixes = []string{"oci:", "oci-archive:", "docker-archive:"}

func hasTransport(s string) bool {
	for _, p := range transportPrefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// checkTransportArg refuses registries as SRC or DST.
func checkTransportArg(s string) error {
	if strings.HasPrefix(s, "docker://") {
		return usagef("%s: images are changed in layouts and archives only; pull it first, or push the result, with strata copy", s)
	}
	return nil
}

// inLayout says whether the change is made in SRC's layout and names
// the result there, rather than going through a transfer.
func (c *imageChange) inLayout() bool {
	src := strings.TrimPrefix(c.src, "oci:")
	if hasTransport(src) {
		return false
	}
	if c.dst == "" || !hasTransport(c.dst) {
		return true
	}
	// oci:SAME_DIR:NAME is a name in the same layout too.
	dir, _, _ := strings.Cut(src, ":")
	d, _, _ := strings.Cut(strings.TrimPrefix(c.dst, "oci:"), ":")
	return strings.HasPrefix(c.dst, "oci:") && sameDirArg(dir, d)
}

// run makes the change and prints the digest of the result.
func (g *globalFlags) runImageChange(c *imageChange) error {
	if err := checkTransportArg(c.src); err != nil {
		return err
	}
	if err := checkTransportArg(c.dst); err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	if c.inLayout() {
		return g.changeInLayout(ctx, c)
	}
	if c.dst != "" && !hasTransport(c.dst) && !strings.ContainsAny(c.dst, ":/") {
		// A bare name has no layout to go into when SRC is an archive.
		return usagef("%s: name where the result goes: oci:DIR[:NAME], LAYOUT:NAME, oci-archive:FILE[:NAME] or docker-archive:FILE[:NAME:TAG]", c.dst)
	}
	var opts mutate.TransferOptions
	if strings.HasPrefix(c.dst, "docker-archive:") {
		// A docker-archive holds one platform's image.
		switch len(c.platforms) {
		case 0:
			host, err := layout.ParsePlatform("")
			if err != nil {
				return err
			}
			opts.Select = []ocispec.Platform{host}
		case 1:
			opts.Select = c.platforms
		default:
			return usagef("%s holds one platform's image: give one --platform", c.dst)
		}
	}
	imgs, res, err := mutate.Transfer(ctx, c.src, c.dst, opts, c.change)
	if err != nil {
		return err
	}
	to := c.dst
	if to == "" {
		to = c.src
	}
	for _, img := range imgs {
		g.infof("%s %s%s: %s, stored in %s as %s", c.verb, c.src, changedPlatforms(res), img.Descriptor.Digest, to, namesOf(img))
		fmt.Fprintln(c.out, img.Descriptor.Digest)
	}
	return nil
}

// changeInLayout makes the change in SRC's layout and names the result:
// DST, else the name SRC was found by, which moves to the new image; an
// image SRC names by digest (or the layout's only, unnamed image) stays,
// and the new one is added untagged.
func (g *globalFlags) changeInLayout(ctx context.Context, c *imageChange) error {
	dir, ref, err := parseRefArg(strings.TrimPrefix(c.src, "oci:"))
	if err != nil {
		return err
	}
	name := ""
	if rest, ok := strings.CutPrefix(c.dst, "oci:"); ok {
		// oci:DIR[:NAME], DIR being SRC's layout (inLayout checked it).
		_, name, _ = strings.Cut(rest, ":")
	} else {
		name = strings.TrimPrefix(c.dst, dir+":")
	}
	if name != "" {
		if _, ok := layout.IsDigestRef(name); ok {
			return usagef("%s: name the new image with a tag, not a digest", c.dst)
		}
		if err := layout.ValidateRef(name); err != nil {
			return usageError{err}
		}
	}
	l, err := layout.Open(dir)
	if err != nil {
		return err
	}
	desc, err := l.Resolve(ref)
	if err != nil {
		l.Close()
		return err
	}
	if name == "" {
		name = desc.Annotations[layout.AnnotationRefName]
		if name == "" {
			name = desc.Annotations[layout.AnnotationImageName]
		}
	}
	res, err := c.change(ctx, l, desc)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err() // the last point to stop at: naming finishes it
	}
	if err == nil {
		if name != "" {
			err = l.Tag(res.Root, name)
		} else {
			err = l.AddUntagged(res.Root)
		}
	}
	if err != nil {
		u, uerr := l.Undo()
		return fmt.Errorf("%w%s", err, undoNote(dir, u, uerr))
	}
	l.Close()
	as := dir + ":" + name
	if name == "" {
		as = dir + "@" + res.Root.Digest.String() + " (untagged)"
	}
	if res.Root.Digest == desc.Digest {
		g.infof("%s: nothing changed", c.src)
	} else {
		g.infof("%s %s%s: %s", c.verb, c.src, changedPlatforms(res), as)
	}
	fmt.Fprintln(c.out, res.Root.Digest)
	return nil
}

// changedPlatforms lists the platforms a change made new images for.
func changedPlatforms(res *mutate.Result) string {
	if res == nil || len(res.Images) == 0 {
		return ""
	}
	ps := make([]string, len(res.Images))
	for i, c := range res.Images {
		ps[i] = platforms.Format(c.Platform)
	}
	return " (" + strings.Join(ps, ", ") + ")"
}

func namesOf(img transport.Image) string {
	if len(img.Names) == 0 {
		return "(untagged)"
	}
	return strings.Join(img.Names, ", ")
}

// parsePlatforms reads --platform flags.
func parsePlatforms(ss []string) ([]ocispec.Platform, error) {
	var out []ocispec.Platform
	for _, s := range ss {
		p, err := layout.ParsePlatform(s)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, p)
	}
	return out, nil
}

// sameDirArg says whether two directory arguments name one directory.
func sameDirArg(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
