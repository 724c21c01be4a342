package main

import (
	"path/filepath"

	"github.com/strata-oci/strata/internal/compression"
)

// Workloads of strata export and strata flatten: the merged file system
// of an image as one tar, and as a one-layer image, against
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

// The target is on the minbase image (":base", one layer); the
// three-layer image (":full": minbase, the Go tree, whiteouts, an opaque
// directory and hard links) is measured beside it, as what flatten is
// for.
func exportWorkload(e *env, k compression.Kind) *workload { return exportOf(e, k, "export", "full") }

func exportBaseWorkload(e *env, k compression.Kind) *workload {
	return exportOf(e, k, "export-minbase", "base")
}

func flattenWorkload(e *env, k compression.Kind) *workload {
	return flattenOf(e, k, "flatten", "full")
}

func flattenBaseWorkload(e *env, k compression.Kind) *workload {
	return flattenOf(e, k, "flatten-minbase", "base")
}

func exportOf(e *env, k compression.Kind, name, ref string) *workload {
	src := e.Data.Layouts[k] + ":" + ref
	wl := &workload{Name: name, Kind: k, Needs: []string{"export -o"}}
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

func flattenOf(e *env, k compression.Kind, name, ref string) *workload {
	wl := &workload{Name: name, Kind: k, Needs: []string{"flatten --compression"}}
	strata := side{
		Label: "strata flatten",
		Role:  roleStrata,
		Setup: func(w *work) error { return copyLayout(e.Data.Layouts[k], filepath.Join(w.Dir, "l")) },
		Argv: func(w *work) []string {
			l := filepath.Join(w.Dir, "l")
			return e.Strata.flatten(k, l+":"+ref, l+":flat")
		},
		Check: func(w *work) error { return checkLayers(filepath.Join(w.Dir, "l"), "flat", 1) },
	}
	wl.Sides = []side{strata, umociTarSide(e.Data.Layouts[k]+":"+ref, k)}
	wl.Targets = []target{target2(strata.Label, "umoci unpack + tar -c", 2)}
	return wl
}
