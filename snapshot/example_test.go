package snapshot_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/strata-oci/strata/layout"
	"github.com/strata-oci/strata/snapshot"
)

// Open a store and unpack an image into a bundle. Who the process is
// comes from the caller: here an unprivileged user outside any user
// namespace, whose own files stand for the image's root (owners in the
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
	l, err := layout.Open("./img")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	rec, err := s.Unpack(context.Background(), l, "v1", "./bundle", snapshot.UnpackOptions{Driver: snapshot.VFS})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Dir, snapshot.OwnersKind(rec.Owners))
}
