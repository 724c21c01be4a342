package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-oci/strata/layout/remote"
)

// credentialOptions says where registry credentials are kept, as docker,
// podman and skopeo users expect: the --authfile FILE alone when given;
// else docker's config ($DOCKER_CONFIG/config.json, or
// ~/.docker/config.json), read and written, with the auth.json files of
// podman, buildah and skopeo read after it. The library reads no
// environment: this is where it is read.
func credentialOptions(authFile string) []remote.Option {
	if authFile != "" {
		return []remote.Option{remote.WithAuthFile(authFile)}
	}
	var opts []remote.Option
	if p, ok := dockerConfigFile(); ok {
		opts = append(opts, remote.WithAuthFile(p))
	}
	if fb := containersAuthFiles(); len(fb) > 0 {
		opts = append(opts, remote.WithFallbackAuthFiles(fb...))
	}
	return opts
}

// dockerConfigFile is where docker login keeps credentials.
func dockerConfigFile() (string, bool) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", false
		}
		dir = filepath.Join(home, ".docker")
	}
	return filepath.Join(dir, "config.json"), true
}

// containersAuthFiles lists the existing auth files of podman, buildah and
// skopeo, in the order they read them.
func containersAuthFiles() []string {
	var cands []string
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		cands = append(cands, p)
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		cands = append(cands, filepath.Join(d, "containers", "auth.json"))
	} else {
		cands = append(cands, filepath.Join("/run/containers", fmt.Sprint(os.Getuid()), "auth.json"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		cands = append(cands, filepath.Join(home, ".config", "containers", "auth.json"))
	}
	var out []string
	for _, p := range cands {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			out = append(out, p)
		}
	}
	return out
}
