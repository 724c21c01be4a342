package remote

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoginLogout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok && u == "alice" && p == "pw" {
			return
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	authFile := filepath.Join(t.TempDir(), "config.json")
	ctx := context.Background()
	read := func() string {
		b, _ := os.ReadFile(authFile)
		return string(b)
	}

	if err := Login(ctx, host, "alice", "wrong", WithAuthFile(authFile)); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if strings.Contains(read(), host) {
		t.Fatal("a refused login was stored")
	}
	if err := Login(ctx, host, "alice", "", WithAuthFile(authFile)); err == nil {
		t.Fatal("login with an empty password succeeded")
	}
	if err := Login(ctx, "http://"+host+"/", "alice", "pw", WithAuthFile(authFile)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(read(), host) {
		t.Fatalf("login stored nothing: %s", read())
	}
	if err := Logout(ctx, host, WithAuthFile(authFile)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(read(), host) {
		t.Fatalf("logout left the credentials: %s", read())
	}
	if err := Logout(ctx, host, WithAuthFile(authFile)); !errors.Is(err, ErrNotLoggedIn) {
		t.Fatalf("second logout: %v", err)
	}

	// Docker Hub's credentials live under docker's historical key.
	hub := `{"auths":{"https://index.docker.io/v1/":{"auth":"YWxpY2U6cHc="}}}`
	if err := os.WriteFile(authFile, []byte(hub), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Logout(ctx, "docker.io", WithAuthFile(authFile)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(read(), "index.docker.io") {
		t.Fatalf("logout from docker.io left %s", read())
	}
}
