package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/internal/compression"
)

// unpackSharedWorkload unpacks the full image into a store that already
// holds the base image's snapshot, as a second image sharing its base
// would be: the overlay driver should pay only for the two new layers,
// which is what extracting just those layers with tar costs.
func unpackSharedWorkload(e *env, k compression.Kind) *workload {
	ds := e.Data
	wl := &workload{Name: "unpack-shared", Kind: k, Needs: []string{"unpack --driver --root"}}
	store := func(w *work) string { return filepath.Join(w.Dir, "store") }
	for _, drv := range e.Drivers {
		wl.Sides = append(wl.Sides, side{
			Label: "strata unpack (" + drv + "), base layer already extracted",
			Role:  roleStrata,
			Setup: func(w *work) error {
				argv := e.Strata.unpack(drv, store(w), ds.Layouts[k]+":base", filepath.Join(w.Dir, "base"))
				if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
					return fmt.Errorf("unpack the base image: %v: %s", err, out)
				}
				return nil
			},
			Argv: func(w *work) []string {
				return e.Strata.unpack(drv, store(w), ds.Layouts[k]+":full", filepath.Join(w.Dir, "bundle"))
			},
			Check: func(w *work) error { return checkRootfs(filepath.Join(w.Dir, "bundle", "rootfs"), ds.Plan) },
		})
	}
	// (The workload list is also made before the data exists, to check
	// -only: then there are no layers.)
	newLayers := ds.Layers[k]
	if len(newLayers) > 0 {
		newLayers = newLayers[1:]
	}
	dec, script := tarLayersScript(ds, k, newLayers)
	limit := dec + " | tar -x of the two new layers"
	wl.Sides = append(wl.Sides, side{
		Label: limit,
		Role:  roleLimit,
		Tools: []string{strings.Fields(dec)[0], "tar"},
		Argv:  func(w *work) []string { return sh(script) },
	})
	for _, drv := range e.Drivers {
		if drv == "overlay" {
			wl.Targets = append(wl.Targets, target{Strata: "strata unpack (overlay), base layer already extracted", Peer: limit, MinRatio: 1 / 1.2})
		}
	}
	return wl
}

// tarLayersScript is a shell script that extracts layers one after the
// other into ./out with the plain tools (no whiteouts), and the
// decompressor it uses.
func tarLayersScript(ds *dataset, k compression.Kind, layers []ocispec.Descriptor) (dec, script string) {
	dec = "gzip -dc"
	if k == compression.Zstd {
		dec = "zstd -qdc"
	}
	var b strings.Builder
	b.WriteString("mkdir out\n")
	for _, l := range layers {
		fmt.Fprintf(&b, "%s %s | tar --numeric-owner -xpf - -C out\n", dec, q(ds.blobPath(k, l.Digest)))
	}
	return dec, b.String()
}
