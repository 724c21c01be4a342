package remote

import (
	"errors"
	"fmt"
	"net/http"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// Errors a registry answers with, for errors.Is.
var (
	// ErrUnauthorized means the registry wants credentials, or refused the
	// ones it was given.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrDenied means the credentials were accepted but do not allow the
	// operation.
	ErrDenied = errors.New("access denied")
	// ErrNotFound means the registry has no such repository, tag or
	// manifest.
	ErrNotFound = errors.New("not found in the registry")
)

// UnauthorizedError is a registry's refusal of a request for want of
// credentials: none were sent (Refused false), or the registry refused
// those sent. It matches ErrUnauthorized.
type UnauthorizedError struct {
	Registry string // as the user names it: docker.io, localhost:5000
	Refused  bool
	Err      error // the registry's answer
}

func (e *UnauthorizedError) Error() string {
	if e.Refused {
		return fmt.Sprintf("%v: registry %s refused the credentials: %v", ErrUnauthorized, e.Registry, e.Err)
	}
	return fmt.Sprintf("%v: registry %s needs credentials: %v", ErrUnauthorized, e.Registry, e.Err)
}

func (e *UnauthorizedError) Is(target error) bool { return target == ErrUnauthorized }

func (e *UnauthorizedError) Unwrap() error { return e.Err }

// explain puts the sentinel (or UnauthorizedError) in front of a registry
// error, whose own text (method, URL, status) is kept after it.
func explain(err error, domain string) error {
	if err == nil {
		return nil
	}
	// oras-go's wrapper names its internal steps ("failed to perform Push
	// on destination"), which reads wrongly for a pull; the inner error
	// names the blob and the request.
	var ce *oras.CopyError
	if errors.As(err, &ce) && ce.Err != nil {
		err = ce.Err
	}
	var er *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return &UnauthorizedError{Registry: domain, Err: err}
	case errors.As(err, &er) && er.StatusCode == http.StatusUnauthorized:
		return &UnauthorizedError{Registry: domain, Refused: true, Err: err}
	case errors.As(err, &er) && er.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrDenied, err)
	case errors.Is(err, errdef.ErrNotFound) || errors.As(err, &er) && er.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}
