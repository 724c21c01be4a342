package layout

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// DuplicatePlatform says that an index lists more than one manifest for
// the platform an image was selected for. The first was taken, as
// containerd and docker take it; the others are worth telling the user
// about, since the index's author may not have meant them to be hidden.
type DuplicatePlatform struct {
	// Index is the digest of the index the selection started from.
	Index    digest.Digest
	Platform ocispec.Platform
	// Chosen is the manifest taken, Others the ones passed over, in the
	// index's order.
	Chosen ocispec.Descriptor
	Others []ocispec.Descriptor
}

func (d *DuplicatePlatform) String() string {
	others := make([]string, len(d.Others))
	for i, o := range d.Others {
		others[i] = o.Digest.String()
	}
	return fmt.Sprintf("index %s lists %d manifests for %s: took the first, %s; passed over %s",
		d.Index, len(d.Others)+1, platforms.Format(d.Platform), d.Chosen.Digest, strings.Join(others, ", "))
}

// PickManifest chooses among the manifests of index (in its order, each
// with its platform) the one for want: the closest match, and of equals
// the first. When other manifests have exactly the chosen one's platform,
// it says so in a DuplicatePlatform. No match is ErrNoPlatform.
func PickManifest(index digest.Digest, want ocispec.Platform, manifests []ocispec.Descriptor) (ocispec.Descriptor, *DuplicatePlatform, error) {
	m := platforms.Only(want)
	var cands []ocispec.Descriptor
	for _, c := range manifests {
		if c.Platform != nil && m.Match(platforms.Normalize(*c.Platform)) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return ocispec.Descriptor{}, nil, fmt.Errorf("index %s: %w %s", index, ErrNoPlatform, platforms.Format(want))
	}
	sort.SliceStable(cands, func(i, j int) bool {
		return m.Less(platforms.Normalize(*cands[i].Platform), platforms.Normalize(*cands[j].Platform))
	})
	chosen := cands[0]
	got := platforms.Normalize(*chosen.Platform)
	var dup *DuplicatePlatform
	for _, c := range cands[1:] {
		if c.Digest == chosen.Digest || !samePlatform(got, platforms.Normalize(*c.Platform)) {
			continue
		}
		if dup == nil {
			dup = &DuplicatePlatform{Index: index, Platform: got, Chosen: chosen}
		}
		if !slices.ContainsFunc(dup.Others, func(o ocispec.Descriptor) bool { return o.Digest == c.Digest }) {
			dup.Others = append(dup.Others, c)
		}
	}
	return chosen, dup, nil
}

func samePlatform(a, b ocispec.Platform) bool {
	return a.OS == b.OS && a.Architecture == b.Architecture && a.Variant == b.Variant &&
		a.OSVersion == b.OSVersion && slices.Equal(a.OSFeatures, b.OSFeatures)
}
