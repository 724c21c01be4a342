package tests

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// startReferrersRegistry serves, on a loopback port, a registry that has
// the distribution-spec 1.1 referrers API (go-containerregistry's
// in-memory registry). The Debian registry regStart runs has none, so
// clients keep referrers under the fallback tag there.
func startReferrersRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0)))
	srv := &http.Server{Handler: withSubjectHeader(reg)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// withSubjectHeader answers a manifest push whose manifest has a subject
// with the OCI-Subject header, as the spec asks of a registry with the
// referrers API (clients such as oras-go write the fallback tag without
// it); go-containerregistry's registry does not set it.
func withSubjectHeader(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(b))
			var m struct {
				Subject *ocispec.Descriptor `json:"subject"`
			}
			if json.Unmarshal(b, &m) == nil && m.Subject != nil {
				w.Header().Set("OCI-Subject", m.Subject.Digest.String())
			}
		}
		h.ServeHTTP(w, r)
	})
}

// regGetJSON GETs http://host/v2/path and decodes the JSON answer into v.
func regGetJSON(t *testing.T, host, path string, v any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", ocispec.MediaTypeImageIndex+", "+ocispec.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/v2/%s: %s\n%s", host, path, resp.Status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s/v2/%s: %v\n%s", host, path, err, b)
	}
}

// regTags lists the tags of repo in the registry at host.
func regTags(t *testing.T, host, repo string) []string {
	t.Helper()
	var list struct {
		Tags []string `json:"tags"`
	}
	regGetJSON(t, host, repo+"/tags/list", &list)
	return list.Tags
}

// apiReferrers lists, through the referrers API, the digests of the
// direct referrers of subject in repo.
func apiReferrers(t *testing.T, host, repo string, subject digest.Digest) []digest.Digest {
	t.Helper()
	var idx ocispec.Index
	regGetJSON(t, host, repo+"/referrers/"+subject.String(), &idx)
	var out []digest.Digest
	for _, m := range idx.Manifests {
		out = append(out, m.Digest)
	}
	slices.Sort(out)
	return out
}

// fallbackTag is the tag of the referrers index a registry without the
// referrers API keeps for subject (distribution-spec 1.1).
func fallbackTag(subject digest.Digest) string {
	return subject.Algorithm().String() + "-" + subject.Encoded()
}

// Referrers travel through both of the distribution spec's ways: a
// registry with the referrers API (no fallback tag is written there, so
// only the API finds them) and one without it (the sha256-<hex> fallback
// tag). An SBOM and a signature of the SBOM go API registry -> layout ->
// fallback registry -> layout -> API registry with strata pull and push
// --referrers, and registry -> oci-archive -> registry with strata copy
// --referrers; oras discover lists them in each registry.
func TestReferrersAPIAndFallbackTag(t *testing.T) {
	oras := needTool(t, "oras")
	api := startReferrersRegistry(t)
	fallback := regStart(t, regConfig{}).listen
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	img := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/hello": []byte("hello\n")}, nil))
	strata(t, "push", src+":v1", api+"/team/app:v1")

	if err := os.WriteFile(filepath.Join(tmp, "sbom.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "sig.txt"), []byte("signed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	at := "@" + img.Digest.String()
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/spdx+json", api+"/team/app"+at, "sbom.json")
	sboms := apiReferrers(t, api, "team/app", img.Digest)
	if len(sboms) != 1 {
		t.Fatalf("referrers API in A lists %v, want the SBOM", sboms)
	}
	sbom := sboms[0]
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/vnd.example.signature", api+"/team/app@"+sbom.String(), "sig.txt")
	sigs := apiReferrers(t, api, "team/app", sbom)
	if len(sigs) != 1 {
		t.Fatalf("referrers API lists %v for the SBOM, want its signature", sigs)
	}
	want := []digest.Digest{sbom, sigs[0]}
	slices.Sort(want)
	noFallbackTags := func(host, repo string) {
		t.Helper()
		for _, tag := range regTags(t, host, repo) {
			if tag != "v1" {
				t.Errorf("%s/%s has the tag %s: the referrers API was not used", host, repo, tag)
			}
		}
	}
	noFallbackTags(api, "team/app")

	// API registry -> layout: only the API can have found them.
	l1 := filepath.Join(tmp, "l1")
	strata(t, "pull", "--referrers", api+"/team/app:v1", l1)
	name := l1 + ":" + api + "/team/app:v1"
	if got := referrerDigests(t, name); !slices.Equal(got, want) {
		t.Fatalf("pulled through the referrers API: %v, want %v", got, want)
	}

	// Layout -> registry without the API: the fallback tags are written,
	// one per subject, and oras finds the referrers through them.
	strata(t, "push", "--referrers", name, fallback+"/team/app:v1")
	tags := regTags(t, fallback, "team/app")
	for _, d := range []digest.Digest{img.Digest, sbom} {
		if !slices.Contains(tags, fallbackTag(d)) {
			t.Errorf("registry without the API: tags %v lack the fallback tag of %s", tags, d)
		}
	}
	var fb ocispec.Index
	regGetJSON(t, fallback, "team/app/manifests/"+fallbackTag(img.Digest), &fb)
	if len(fb.Manifests) != 1 || fb.Manifests[0].Digest != sbom || fb.Manifests[0].ArtifactType != "application/spdx+json" {
		t.Errorf("fallback tag index: %+v", fb.Manifests)
	}
	if got := orasDiscover(t, oras, fallback+"/team/app"+at, "--plain-http"); !slices.Equal(got, want) {
		t.Errorf("oras discover in the registry without the API: %v, want %v", got, want)
	}

	// Registry without the API -> layout: read through the fallback tags.
	l2 := filepath.Join(tmp, "l2")
	strata(t, "pull", "--referrers", fallback+"/team/app:v1", l2)
	name2 := l2 + ":" + fallback + "/team/app:v1"
	if got := referrerDigests(t, name2); !slices.Equal(got, want) {
		t.Fatalf("pulled through the fallback tag: %v, want %v", got, want)
	}
	regFsck(t, l2)

	// Layout -> registry with the API: no fallback tag, the API lists them.
	strata(t, "push", "--referrers", name2, api+"/mirror/app:v1")
	if got := apiReferrers(t, api, "mirror/app", img.Digest); !slices.Equal(got, []digest.Digest{sbom}) {
		t.Errorf("referrers API in the mirror: %v, want %v", got, sbom)
	}
	if got := apiReferrers(t, api, "mirror/app", sbom); !slices.Equal(got, sigs) {
		t.Errorf("referrers API for the SBOM in the mirror: %v, want %v", got, sigs)
	}
	noFallbackTags(api, "mirror/app")
	if got := orasDiscover(t, oras, api+"/mirror/app"+at, "--plain-http"); !slices.Equal(got, want) {
		t.Errorf("oras discover in the mirror: %v, want %v", got, want)
	}
	if got := regResolve(t, l2, fallback+"/team/app:v1"); got != img.Digest {
		t.Errorf("image digest changed: %s, want %s", got, img.Digest)
	}

	// A layout oras cp -r writes from the registry: strata finds both.
	o := filepath.Join(tmp, "oras")
	runTool(t, "", nil, oras, "cp", "-r", "--from-plain-http", api+"/team/app:v1", "--to-oci-layout", o+":v1")
	if got := referrerDigests(t, o+":v1"); !slices.Equal(got, want) {
		t.Errorf("strata referrers of the layout oras cp -r wrote: %v, want %v", got, want)
	}
	regFsck(t, o)

	// copy carries them too: registry -> oci-archive -> registry.
	archive := filepath.Join(tmp, "app.tar")
	strata(t, "copy", "--referrers", "docker://"+api+"/team/app:v1", "oci-archive:"+archive+":app")
	strata(t, "copy", "--referrers", "oci-archive:"+archive+":app", "docker://"+fallback+"/copied/app:v1")
	if got := orasDiscover(t, oras, fallback+"/copied/app"+at, "--plain-http"); !slices.Equal(got, want) {
		t.Errorf("oras discover after copy through an archive: %v, want %v", got, want)
	}
}
