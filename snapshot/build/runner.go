package build

import (
	"context"
	"path/filepath"

	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/run"
)

// RunDir is where RUN steps' runtime state lives under the store's root.
const RunDir = "run"

// defaultRunner runs RUN steps through snapshot/run (crun, else runc),
// with its state under the store (ROOT/build/run).
func defaultRunner(store *snapshot.Store) Runner {
	return func(ctx context.Context, bundle string, spec RunSpec) (int, error) {
		o := run.Options{
			StateDir: filepath.Join(store.Root(), BuildDir, RunDir),
			Store:    store.Options(),
			Args:     spec.Args,
			Env:      spec.Env,
			Cwd:      spec.Cwd,
			User:     spec.User,
			Network:  spec.Network,
			Stdout:   spec.Stdout,
			Stderr:   spec.Stderr,
		}
		for _, m := range spec.Mounts {
			rm := run.Mount{Type: m.Type, Source: m.Source, Destination: m.Target, ReadOnly: m.ReadOnly}
			if m.Type == "tmpfs" && m.Size > 0 {
				rm.Options = append(rm.Options, "size="+itoa(m.Size))
			}
			o.Mounts = append(o.Mounts, rm)
		}
		return run.Run(ctx, bundle, o)
	}
}
