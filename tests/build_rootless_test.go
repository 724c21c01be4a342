package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lt "github.com/strata-oci/strata/snapshot/layertest"
)

// rootlessBuildCase is one corpus context TestBuildRootless builds as the
// unprivileged user and as root.
type rootlessBuildCase struct {
	ctx, driver string
	// args are passed to both builds, with BASE (and PARENT) added.
	args []string
	// parent: the context's Containerfile.parent is built first, as
	// "parent", and the Containerfile FROM it (ONBUILD).
	parent bool
}

// rootlessBuildCases are the whole corpus, drivers alternating.
func rootlessBuildCases(secret string) []rootlessBuildCase {
	return []rootlessBuildCase{
		{ctx: "basics", driver: "vfs", args: []string{"--build-arg", "VERSION=2.5", "--build-arg", "GLOBAL=from-cli"}},
		{ctx: "multistage", driver: "overlay"},
		{ctx: "heredoc", driver: "vfs"},
		{ctx: "modern", driver: "overlay", args: []string{"--secret", "id=token,src=" + secret}},
		{ctx: "onbuild", driver: "vfs", parent: true},
	}
}

// rootlessCorpusBuild builds c's context (a copy the user owns) as the
// user into uout and as root into rootOut, and compares each image.
func rootlessCorpusBuild(t *testing.T, c rootlessBuildCase, dir, ubase, base, rootOut string, uid, gid int) {
	ctx := buildContext(t, c.ctx)
	uctx := filepath.Join(dir, c.ctx+"-ctx-"+c.driver)
	copyTree(t, ctx, uctx)
	lt.Must(t, os.Chmod(filepath.Join(uctx), 0o755))
	if c.ctx == "basics" {
		lt.Must(t, os.Chmod(filepath.Join(uctx, "data/sub/d2"), 0o600))
		lt.Must(t, os.Chmod(filepath.Join(uctx, "data/sub"), 0o750))
	}
	rlChownTree(t, uctx, uid, gid)
	uout := filepath.Join(dir, "out-"+c.driver)
	ustore, rstore := filepath.Join(dir, "store"), filepath.Join(t.TempDir(), "store")
	type build struct{ tag, file, from string }
	builds := []build{{tag: c.ctx, from: "BASE"}}
	if c.parent {
		builds = []build{{tag: c.ctx + "-parent", file: "Containerfile.parent", from: "BASE"}, {tag: c.ctx, from: "PARENT"}}
	}
	for _, b := range builds {
		// argsFor gives one side's arguments: its context, output layout
		// and base.
		argsFor := func(store, cdir, out, from string) []string {
			a := append([]string{"--root", store, "--driver", c.driver, "--build-arg", b.from + "=" + from, "-t", out + ":" + b.tag}, c.args...)
			if b.file != "" {
				a = append(a, "-f", filepath.Join(cdir, b.file))
			}
			return append(a, cdir)
		}
		ufrom, rfrom := ubase+":base", base
		if b.from == "PARENT" {
			ufrom, rfrom = uout+":"+c.ctx+"-parent", rootOut+":"+c.ctx+"-parent"
		}
		r := asUser(t, rootlessUser, dir, append([]string{"build"}, argsFor(ustore, uctx, uout, ufrom)...)...)
		if r.Code != 0 || strings.Contains(r.Stderr, "falling back") {
			t.Fatalf("rootless build of %s: exit %d\n%s", b.tag, r.Code, tail(r.Stderr, 6000))
		}
		strataBuild(t, argsFor(rstore, ctx, rootOut, rfrom)...)
		compareFacts(t, "rootless", factsOf(t, uout+":"+b.tag), "root", factsOf(t, rootOut+":"+b.tag))
	}
}
