package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"github.com/strata-oci/strata/layout/remote"
)

// registryFlags are the connection flags of every command that talks to a
// registry (pull, push, login, copy), kept in one place so that they mean
// the same thing everywhere.
type registryFlags struct {
	insecure  bool
	plainHTTP bool
	certDir   string
	authFile  string
	// locations is the blob location cache of this run, flushed by
	// flushCache once the command is done.
	locations *remote.LocationCache
}

func (f *registryFlags) add(fs *pflag.FlagSet) {
	fs.BoolVar(&f.insecure, "insecure", false, "do not verify the registry's TLS certificate, and allow plain HTTP when it does not speak HTTPS")
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk plain HTTP to the registry (loopback registries fall back to it by themselves)")
	fs.StringVar(&f.certDir, "cert-dir", "", "trust the CAs (*.crt) and use the client certificates (*.cert + *.key) in `DIR` (default: /etc/containers/certs.d/HOST and /etc/docker/certs.d/HOST)")
	fs.StringVar(&f.authFile, "authfile", "", "keep credentials in `FILE` (docker config.json format) instead of $DOCKER_CONFIG/config.json or ~/.docker/config.json")
}

func (f *registryFlags) options() []remote.Option {
	opts := []remote.Option{
		remote.WithWarnings(func(s string) { fmt.Fprintf(os.Stderr, "strata: warning: %s\n", s) }),
		remote.WithUserAgent("strata/" + version),
	}
	if f.insecure {
		opts = append(opts, remote.WithInsecure())
	}
	if f.plainHTTP {
		opts = append(opts, remote.WithPlainHTTP())
	}
	if f.certDir != "" {
		opts = append(opts, remote.WithCertDir(f.certDir))
	}
	if f.locations == nil {
		f.locations = openLocationCache()
	}
	if f.locations != nil {
		opts = append(opts, remote.WithLocationCache(f.locations))
	}
	return append(opts, credentialOptions(f.authFile)...)
}

// flushCache saves what this run learnt of where blobs are. The cache is
// a hint: failing to save it is worth a warning, not a failure.
func (f *registryFlags) flushCache() {
	if err := f.locations.Flush(); err != nil {
		fmt.Fprintf(os.Stderr, "strata: warning: %v\n", err)
	}
}

// openLocationCache opens the cache of which registry repositories hold
// which blobs: $XDG_CACHE_HOME/strata/blob-locations, or
// ~/.cache/strata/blob-locations; none when neither can be found.
func openLocationCache() *remote.LocationCache {
	dir, err := os.UserCacheDir()
	if err != nil {
		return nil
	}
	return remote.OpenLocationCache(filepath.Join(dir, "strata", "blob-locations"))
}
