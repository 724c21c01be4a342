package remote

import (
	"context"
	"errors"
	"fmt"

	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
)

// ErrNotLoggedIn means Logout found no credentials for the registry.
var ErrNotLoggedIn = errors.New("not logged in")

// Login checks username and password against the registry (a host,
// host:port or docker.io) and stores them in the credential store: the
// docker config file, or the credential helper it names.
func Login(ctx context.Context, reg, username, password string, opts ...Option) error {
	o := buildOptions(opts)
	domain, err := normalizeRegistry(reg)
	if err != nil {
		return err
	}
	if username == "" || password == "" {
		return fmt.Errorf("login to %s: a user name and a password are needed", domain)
	}
	sess, err := o.connect(ctx, Reference{Domain: domain}.Host())
	if err != nil {
		return err
	}
	if sess.store == nil {
		return fmt.Errorf("login to %s: %w", domain, ErrNoCredentialStore)
	}
	r, err := sess.registry()
	if err != nil {
		return err
	}
	if err := credentials.Login(ctx, sess.store, r, auth.Credential{Username: username, Password: password}); err != nil {
		return fmt.Errorf("login to %s: %w", domain, explain(err, domain))
	}
	return nil
}

// Logout removes the stored credentials of the registry. It returns
// ErrNotLoggedIn when there were none.
func Logout(ctx context.Context, reg string, opts ...Option) error {
	o := buildOptions(opts)
	domain, err := normalizeRegistry(reg)
	if err != nil {
		return err
	}
	store, err := o.credentialStore()
	if err != nil {
		return err
	}
	if store == nil {
		return fmt.Errorf("logout from %s: %w", domain, ErrNoCredentialStore)
	}
	host := Reference{Domain: domain}.Host()
	cred, err := store.Get(ctx, credentials.ServerAddressFromRegistry(host))
	if err != nil {
		return fmt.Errorf("logout from %s: %w", domain, err)
	}
	if cred == auth.EmptyCredential {
		return fmt.Errorf("logout from %s: %w", domain, ErrNotLoggedIn)
	}
	if err := credentials.Logout(ctx, store, host); err != nil {
		return fmt.Errorf("logout from %s: %w", domain, err)
	}
	return nil
}
