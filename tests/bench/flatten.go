package main

import (
	"path/filepath"

	"github.com/strata-oci/strata/internal/compression"
)

// Workloads of strata export and strata flatten: the merged file system
// of the three-layer image as one tar, and as a one-layer image, against
// what users do without them, umoci unpack followed by tar -c of the
// rootfs (which gives the tar export gives). The target: at least
// twice as fast.

func (c strataCLI) export(ref, out string) []string { return c.argv("export", ref, "-o", out) }

func (c strataCLI) flatten(k compression.Kind, ref, newRef string) []string {
	return c.argv("flatten", "--compression", string(k), ref, newRef)
}

// umociTarSide is the peer of export and flatten: umoci unpack, then tar
// -c of the rootfs into out.tar.
func umociTarSide(src string, k compression.Kind) side {
	return side{
		Label:       "umoci unpack + tar -c",
		Role:        rolePeer,
		Tools:       []string{"umoci", "tar"},
		Unavailable: umociNoZstd(k),
		Argv: func(w *work) []string {
			return sh("umoci unpack --image " + q(src) + " bundle && tar -C bundle/rootfs --numeric-owner --xattrs -cf out.tar .")
		},
	}
}

func exportWorkload(e *env, k compression.Kind) *workload {
	src := e.Data.Layouts[k] + ":full"
	wl := &workload{Name: "export", Kind: k, Needs: []string{"export -o"}}
	strata := side{
		Label: "strata export",
		Role:  roleStrata,
		Argv:  func(w *work) []string { return e.Strata.export(src, filepath.Join(w.Dir, "out.tar")) },
		// The rootfs tar has the image's files (checkArchive counts them).
		Check: func(w *work) error { return checkArchive(filepath.Join(w.Dir, "out.tar"), "usr/bin/dpkg", 1000) },
	}
	wl.Sides = []side{strata, umociTarSide(src, k)}
	wl.Targets = []target{target2(strata.Label, "umoci unpack + tar -c", 2)}
	return wl
}

func flattenWorkload(e *env, k compression.Kind) *workload {
	wl := &workload{Name: "flatten", Kind: k, Needs: []string{"flatten --compression"}}
	strata := side{
		Label: "strata flatten",
		Role:  roleStrata,
		Setup: func(w *work) error { return copyLayout(e.Data.Layouts[k], filepath.Join(w.Dir, "l")) },
		Argv: func(w *work) []string {
			l := filepath.Join(w.Dir, "l")
			return e.Strata.flatten(k, l+":full", l+":flat")
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "flat", 1) },
	}
	wl.Sides = []side{strata, umociTarSide(e.Data.Layouts[k]+":full", k)}
	wl.Targets = []target{target2(strata.Label, "umoci unpack + tar -c", 2)}
	return wl
}
