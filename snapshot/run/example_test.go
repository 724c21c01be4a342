package run_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
	"github.com/strata-oci/strata/snapshot/bundle"
	"github.com/strata-oci/strata/snapshot/run"
)

// Run a command in a throwaway bundle of an image, as `strata run` does:
// unpack, run with the caller's stdio and signals, remove. It needs root
// (or strata's user namespace, described by the store options) and crun
// or runc, so go test compiles it without running it; run_test.go runs
// the same.
func ExampleRun() {
	ctx := context.Background()
	root := "/var/lib/strata"
	who := snapshot.StoreOptions{} // root; see snapshot.StoreOptions
	s, err := snapshot.Open(root, who)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	l, err := layout.Open("./img")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	state := filepath.Join(root, "run")
	b, err := run.UnpackTemp(ctx, s, l, "v1", state, bundle.UnpackOptions{Driver: "overlay"})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Remove()

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	code, err := run.Run(ctx, b.Dir, run.Options{
		StateDir: state,
		Store:    who,
		Args:     []string{"sh", "-c", "echo hello from $HOSTNAME; id -u"},
		Env:      []string{"MODE=example"},
		User:     "1000",
		Hostname: "example",
		Network:  run.NetworkNone,
		Mounts:   []run.Mount{{Source: "/etc/ssl/certs", Destination: "/etc/ssl/certs", ReadOnly: true}},
		Stdout:   os.Stdout,
		Stderr:   os.Stderr,
		Signals:  sigs,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit status", code)
}
