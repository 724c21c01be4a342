package snapshot_test

import (
	"fmt"
	"log"
	"os"

	"github.com/strata-oci/strata/snapshot"
)

// Open a store and list its snapshots. Who the process is comes from the
// caller: here an unprivileged user outside any user namespace, whose own
// files stand for the image's root (owners in the
// user.rootlesscontainers xattr). Root passes snapshot.StoreOptions{};
// root of a user namespace passes Rootless and the namespace's mapping
// (UserNS), and then gets the owners that mapping holds.
func ExampleOpen() {
	opts := snapshot.StoreOptions{Rootless: true, UID: os.Geteuid(), GID: os.Getegid()}
	home, _ := os.UserHomeDir()
	root, err := snapshot.DefaultRoot(opts.Rootless, os.Getenv("XDG_DATA_HOME"), home)
	if err != nil {
		log.Fatal(err)
	}
	s, err := snapshot.Open(root, opts)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	infos, err := s.List()
	if err != nil {
		log.Fatal(err)
	}
	for _, in := range infos {
		fmt.Println(in.Name(), snapshot.OwnersKind(in.Owners), in.Size)
	}
}
