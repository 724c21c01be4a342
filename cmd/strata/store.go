package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/internal/userns"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/ids"
)

// storeOptions says who this strata is for the snapshot store, decided
// once here and handed to the library: root of the initial user
// namespace; root of a user namespace (strata's own, entered to mount
// overlay, or another), which gives files the owners its mapping holds;
// or an unprivileged user outside any, whose own files stand for root.
func storeOptions() snapshot.StoreOptions {
	o := snapshot.StoreOptions{UID: os.Geteuid(), GID: os.Getegid()}
	inNS := userns.InNamespace()
	o.Rootless = o.UID != 0 || inNS
	if inNS && o.UID == 0 {
		if m, err := userns.Current(); err == nil {
			o.UserNS = &ids.Map{UIDs: idRanges(m.UIDs), GIDs: idRanges(m.GIDs)}
		}
	}
	return o
}

func idRanges(rs []userns.Range) []ids.Range {
	out := make([]ids.Range, len(rs))
	for i, r := range rs {
		out[i] = ids.Range{ContainerID: r.Inside, HostID: r.Outside, Size: r.Size}
	}
	return out
}

// storeRoot is --root, or the default store: /var/lib/strata for root,
// the user's own otherwise (root of strata's namespace is still the user).
func (g *globalFlags) storeRoot() (string, error) {
	if g.root != "" {
		return g.root, nil
	}
	home, _ := os.UserHomeDir()
	return snapshot.DefaultRoot(os.Geteuid() != 0 || userns.Entered(), os.Getenv("XDG_DATA_HOME"), home)
}

// openStore opens the snapshot store (--root, or the default one).
func (g *globalFlags) openStore() (*snapshot.Store, error) {
	root, err := g.storeRoot()
	if err != nil {
		return nil, err
	}
	s, err := snapshot.Open(root, storeOptions())
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	return s, nil
}

// checkBundleRoot refuses a --root other than the store the bundle dir
// was unpacked into: a bundle's snapshots are in that store alone.
func (g *globalFlags) checkBundleRoot(rec *bundle.Record, dir string) error {
	if g.root == "" {
		return nil
	}
	want, err := filepath.Abs(g.root)
	if err != nil {
		return err
	}
	same := want == rec.Store
	if !same {
		a, errA := filepath.EvalSymlinks(want)
		b, errB := filepath.EvalSymlinks(rec.Store)
		same = errA == nil && errB == nil && a == b
	}
	if !same {
		return usagef("--root %s: bundle %s was unpacked into the snapshot store %s", g.root, dir, rec.Store)
	}
	return nil
}

// bundleNeedsUserns says whether this strata must re-execute in its own
// user namespace to work on the bundle of rec: an unprivileged user's
// overlay rootfs is mounted only there, and only there do the files of a
// bundle written under the namespace's mapping show their owners.
func bundleNeedsUserns(rec *bundle.Record) bool {
	return overlayNeedsUserns(rec.Driver) || (userns.Needed() && snapshot.NeedsNamespace(rec.Owners))
}

// openStoreInUserns opens the store for gc, rm and verify. As an
// unprivileged user whose store holds snapshots written in strata's user
// namespace, it first re-executes strata there: files that belong to the
// user's subordinate IDs can be read and removed only there. Where no
// namespace can be made it goes on without (what it cannot remove is an
// error naming the file).
func (g *globalFlags) openStoreInUserns() (*snapshot.Store, error) {
	s, err := g.openStore()
	if err != nil || !userns.Needed() {
		return s, err
	}
	infos, err := s.List()
	if err != nil {
		s.Close()
		return nil, err
	}
	for _, in := range infos {
		if !snapshot.NeedsNamespace(in.Owners) {
			continue
		}
		s.Close()
		g.debugf("entering a user namespace: snapshot %s has files of subordinate IDs", in.Name())
		code, err := userns.Reexec(os.Args[1:])
		if errors.Is(err, userns.ErrUnavailable) {
			fmt.Fprintf(os.Stderr, "strata: warning: %v\n", err)
			return g.openStore()
		}
		if err != nil {
			return nil, err
		}
		os.Exit(code)
	}
	return s, nil
}
