package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/strata-oci/strata/layout/remote"
	"golang.org/x/term"
)

func newLoginCmd(g *globalFlags) *cobra.Command {
	var (
		f             registryFlags
		username      string
		passwordStdin bool
	)
	c := &cobra.Command{
		Use:   "login [flags] [REGISTRY]",
		Short: "Store credentials for a registry",
		Long: `Check a user name and password against a registry and store them where
docker login stores them: $DOCKER_CONFIG/config.json or ~/.docker/config.json,
or the credential helper that file names (credsStore, credHelpers). pull,
push and skopeo-compatible tools read them from there.

The password is read from stdin with --password-stdin, or asked for when
stdin is a terminal; it is never taken from the command line. With no
REGISTRY, Docker Hub is meant.`,
		Example: `  strata login -u alice localhost:5000
  echo "$TOKEN" | strata login -u bot --password-stdin registry.example.com`,
		Args: rangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Like docker, no registry means Docker Hub.
			if len(args) == 0 {
				args = []string{"docker.io"}
			}
			in := cmd.InOrStdin()
			tty := isTerminal(in)
			var password string
			switch {
			case passwordStdin:
				if username == "" {
					return usagef("--password-stdin needs --username")
				}
				b, err := io.ReadAll(io.LimitReader(in, 1<<20))
				if err != nil {
					return fmt.Errorf("read password from stdin: %w", err)
				}
				password = strings.TrimRight(string(b), "\r\n")
			case tty:
				fd := int(in.(*os.File).Fd())
				if username == "" {
					fmt.Fprint(os.Stderr, "Username: ")
					line, err := bufio.NewReader(in).ReadString('\n')
					if err != nil {
						return fmt.Errorf("read user name: %w", err)
					}
					username = strings.TrimSpace(line)
				}
				fmt.Fprint(os.Stderr, "Password: ")
				b, err := term.ReadPassword(fd)
				fmt.Fprintln(os.Stderr)
				if err != nil {
					return fmt.Errorf("read password: %w", err)
				}
				password = string(b)
			default:
				return usagef("stdin is not a terminal: give the password with --password-stdin (and --username)")
			}
			if username == "" || password == "" {
				return usagef("login needs a user name and a non-empty password")
			}
			if err := remote.Login(cmd.Context(), args[0], username, password, f.options()...); err != nil {
				return err
			}
			g.infof("login succeeded for %s", args[0])
			return nil
		},
	}
	f.add(c.Flags())
	c.Flags().StringVarP(&username, "username", "u", "", "user name")
	c.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from stdin")
	return c
}

// isTerminal says whether r is a terminal the user types into.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
