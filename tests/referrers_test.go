package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

// runTool runs a peer tool in dir with extra environment and fails the test
// unless it exits 0.
func runTool(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// referrerDigests lists the digests of the referrers of LAYOUT:REF as
// strata referrers --json shows them, at every depth.
func referrerDigests(t *testing.T, ref string) []digest.Digest {
	t.Helper()
	var root struct {
		Referrers []json.RawMessage `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(strata(t, "referrers", "--json", ref)), &root); err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	var walk func([]json.RawMessage)
	walk = func(rs []json.RawMessage) {
		for _, r := range rs {
			var n struct {
				Digest    digest.Digest     `json:"digest"`
				Referrers []json.RawMessage `json:"referrers"`
			}
			if err := json.Unmarshal(r, &n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n.Digest)
			walk(n.Referrers)
		}
	}
	walk(root.Referrers)
	slices.Sort(out)
	return out
}

// orasDiscover lists the digests oras discover finds below ref (at any
// depth), with the extra flags (--plain-http, --oci-layout).
func orasDiscover(t *testing.T, oras, ref string, flags ...string) []digest.Digest {
	t.Helper()
	out := runTool(t, "", nil, oras, append([]string{"discover", "--format", "json", ref}, flags...)...)
	var root struct {
		Referrers []json.RawMessage `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(out), &root); err != nil {
		t.Fatalf("oras discover output: %v\n%s", err, out)
	}
	var ds []digest.Digest
	var walk func([]json.RawMessage)
	walk = func(ms []json.RawMessage) {
		for _, m := range ms {
			var n struct {
				Digest    digest.Digest     `json:"digest"`
				Referrers []json.RawMessage `json:"referrers"`
			}
			if err := json.Unmarshal(m, &n); err != nil {
				t.Fatal(err)
			}
			ds = append(ds, n.Digest)
			walk(n.Referrers)
		}
	}
	walk(root.Referrers)
	slices.Sort(ds)
	return ds
}

// An image signed with cosign (a signature and an SPDX attestation) and
// given an SBOM with oras in registry A travels with them, through strata
// pull --referrers, an oci-archive (and a docker-archive) and strata push
// --referrers, to registry B: cosign verifies the signature and the
// attestation there, oras discover lists the SBOM, and every digest is
// what it was in A. skopeo reads the layout's named images.
func TestReferrersSignedImageTravels(t *testing.T) {
	cosign := needTool(t, "cosign")
	oras := needTool(t, "oras")
	needTool(t, "skopeo")
	regA := regStart(t, regConfig{})
	regB := regStart(t, regConfig{})
	tmp := t.TempDir()

	src := filepath.Join(tmp, "src")
	img := regPutImage(t, src, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, []string{"/bin/true"},
		regTarLayer(t, map[string][]byte{"etc/hello": []byte("hello\n"), "data": regRandomBytes(7, 32<<10)}, nil))
	refA := regA.listen + "/team/app"
	strata(t, "push", src+":v1", refA+":v1")

	// Sign with a key pair made here, no transparency log.
	noPass := []string{"COSIGN_PASSWORD="}
	runTool(t, tmp, noPass, cosign, "generate-key-pair")
	insecure := []string{"--allow-insecure-registry", "--allow-http-registry"}
	runTool(t, tmp, noPass, cosign, append([]string{"sign", "--key", "cosign.key", "--tlog-upload=false", "-y", refA + "@" + img.Digest.String()}, insecure...)...)
	// An SBOM attached with oras.
	if err := os.WriteFile(filepath.Join(tmp, "sbom.spdx.json"), []byte(`{"spdxVersion":"SPDX-2.3","name":"app"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/spdx+json", refA+"@"+img.Digest.String(), "sbom.spdx.json")
	sbomA := orasDiscover(t, oras, refA+"@"+img.Digest.String(), "--plain-http")
	if len(sbomA) != 1 {
		t.Fatalf("oras discover in A: %v", sbomA)
	}
	// An SPDX attestation with cosign: its .att tag.
	runTool(t, tmp, noPass, cosign, append([]string{"attest", "--key", "cosign.key", "--tlog-upload=false", "-y", "--type", "spdxjson", "--predicate", "sbom.spdx.json", refA + "@" + img.Digest.String()}, insecure...)...)
	sigTag := layout.CosignTag(img.Digest, ".sig")
	sigA := regRawDigest(t, "--tls-verify=false", "docker://"+refA+":"+sigTag)
	attTag := layout.CosignTag(img.Digest, ".att")
	attA := regRawDigest(t, "--tls-verify=false", "docker://"+refA+":"+attTag)

	// A -> layout -> oci-archive -> layout -> registry B.
	l1 := filepath.Join(tmp, "l1")
	strata(t, "pull", "--referrers", refA+":v1", l1)
	name := refA + ":v1"
	want := []digest.Digest{sbomA[0], sigA, attA}
	slices.Sort(want)
	if got := referrerDigests(t, l1+":"+name); !slices.Equal(got, want) {
		t.Fatalf("pulled referrers %v, want the SBOM and the signature %v", got, want)
	}
	regFsck(t, l1)
	archive := filepath.Join(tmp, "app.tar")
	strata(t, "save", "--referrers", "--format", "oci-archive", l1+":"+name, "-o", archive)
	l2 := filepath.Join(tmp, "l2")
	strata(t, "load", "--referrers", archive, l2)
	if got := referrerDigests(t, l2+":"+name); !slices.Equal(got, want) {
		t.Fatalf("loaded referrers %v, want %v", got, want)
	}
	regFsck(t, l2)
	// The docker-archive's OCI part carries them too.
	darchive := filepath.Join(tmp, "app-docker.tar")
	strata(t, "save", "--referrers", l1+":"+name, "-o", darchive)
	l3 := filepath.Join(tmp, "l3")
	strata(t, "load", "--referrers", darchive, l3)
	if got := referrerDigests(t, l3+":"+name); !slices.Equal(got, want) {
		t.Fatalf("referrers through a docker-archive %v, want %v", got, want)
	}

	refB := regB.listen + "/mirror/app"
	out := strata(t, "push", "--referrers", l2+":"+name, refB+":v1")
	if !strings.Contains(out, img.Digest.String()) {
		t.Errorf("push printed %q", out)
	}
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+refB+":v1"); got != img.Digest {
		t.Errorf("image in B is %s, want %s", got, img.Digest)
	}
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+refB+":"+sigTag); got != sigA {
		t.Errorf("signature in B is %s, want %s", got, sigA)
	}
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+refB+":"+attTag); got != attA {
		t.Errorf("attestation in B is %s, want %s", got, attA)
	}
	runTool(t, tmp, nil, cosign, append([]string{"verify-attestation", "--key", "cosign.pub", "--insecure-ignore-tlog=true", "--type", "spdxjson", refB + "@" + img.Digest.String()}, insecure...)...)
	verify := runTool(t, tmp, nil, cosign, append([]string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog=true", refB + "@" + img.Digest.String()}, insecure...)...)
	if !strings.Contains(verify, img.Digest.String()) {
		t.Errorf("cosign verify in B: %s", verify)
	}
	if got := orasDiscover(t, oras, refB+"@"+img.Digest.String(), "--plain-http"); !slices.Equal(got, sbomA) {
		t.Errorf("oras discover in B: %v, want %v", got, sbomA)
	}

	// skopeo reads every named image of the layout, the signature too
	// (skopeo 1.9 cannot name the untagged SBOM: oci: takes no digest).
	ll, err := layout.Open(l2)
	if err != nil {
		t.Fatal(err)
	}
	ents, err := ll.List()
	ll.Close()
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, e := range ents {
		if e.Name != "" {
			mustRun(t, "skopeo", "inspect", "--raw", "oci:"+l2+":"+e.Name)
			mustRun(t, "skopeo", "inspect", "oci:"+l2+":"+e.Name)
			named = append(named, e.Name)
		}
	}
	if slices.Sort(named); !slices.Equal(named, []string{refA + ":" + attTag, refA + ":" + sigTag, name}) {
		t.Errorf("named entries %v", named)
	}
	mustRun(t, "skopeo", "copy", "oci:"+l2+":"+name, "dir:"+filepath.Join(tmp, "skopeo-dir"))

	// Without --referrers, nothing but the image.
	l4 := filepath.Join(tmp, "l4")
	strata(t, "pull", refA+":v1", l4)
	if got := referrerDigests(t, l4+":"+name); len(got) != 0 {
		t.Errorf("a pull without --referrers brought %v", got)
	}
}

// oras reads the referrers strata keeps (discover and cp from its
// layout, attach into it), and strata reads the layout oras cp -r writes.
func TestReferrersOrasLayouts(t *testing.T) {
	oras := needTool(t, "oras")
	tmp := t.TempDir()
	l := filepath.Join(tmp, "l")
	img := regPutImage(t, l, "v1", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/hello": []byte("hello\n")}, nil))
	if err := os.WriteFile(filepath.Join(tmp, "sbom.json"), []byte(`{"bomFormat":"CycloneDX","specVersion":"1.5"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sbom := digest.Digest(strings.TrimSpace(strata(t, "attach", "--artifact-type", "application/vnd.cyclonedx+json", l+":v1", filepath.Join(tmp, "sbom.json"))))
	sig := digest.Digest(strings.TrimSpace(strata(t, "attach", "--artifact-type", "application/vnd.example.signature", "--annotation", "signer=ci", l+":@"+sbom.String())))
	want := []digest.Digest{sbom, sig}
	slices.Sort(want)
	at := img.Digest.String()

	if got := orasDiscover(t, oras, l+"@"+at, "--oci-layout"); !slices.Equal(got, want) {
		t.Errorf("oras discover --oci-layout: %v, want %v", got, want)
	}
	// oras copies the image with its referrers out of strata's layout...
	o := filepath.Join(tmp, "oras")
	runTool(t, "", nil, oras, "cp", "-r", "--from-oci-layout", l+"@"+at, "--to-oci-layout", o+":v1")
	// ... and strata reads what oras wrote.
	if got := referrerDigests(t, o+":v1"); !slices.Equal(got, want) {
		t.Errorf("strata referrers of oras's layout: %v, want %v", got, want)
	}
	regFsck(t, o)
	back := filepath.Join(tmp, "back")
	strata(t, "copy", "--referrers", o+":v1", back+":v1")
	if got := referrerDigests(t, back+":v1"); !slices.Equal(got, want) {
		t.Errorf("strata copy --referrers of oras's layout: %v, want %v", got, want)
	}
	if got := regResolve(t, back, "v1"); got != img.Digest {
		t.Errorf("copied image %s, want %s", got, img.Digest)
	}
	// oras attaches into strata's layout; strata finds it and fsck is clean.
	if err := os.WriteFile(filepath.Join(tmp, "note.txt"), []byte("reviewed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, tmp, nil, oras, "attach", "--oci-layout", "--artifact-type", "application/vnd.example.note", l+"@"+at, "note.txt")
	if got := referrerDigests(t, l+":v1"); len(got) != 3 {
		t.Errorf("strata referrers after oras attach: %v", got)
	}
	regFsck(t, l)
	// gc keeps them all while the image is named, and drops them with it.
	strata(t, "gc", l)
	if got := referrerDigests(t, l+":v1"); len(got) != 3 {
		t.Errorf("after gc: %v", got)
	}
	strata(t, "rm", l+":v1")
	strata(t, "gc", l)
	if out := strata(t, "ls", "--json", l); strings.TrimSpace(out) != "[]" {
		t.Errorf("after rm and gc the layout holds %s", out)
	}
	regFsck(t, l)
}

// A multi-platform image built with strata index create and add from
// images of two layouts (platforms from their configs, annotations from
// both) is pushed whole, and a registry serves it as built; so is a
// mutated copy of it, and the index after index rm.
func TestIndexCreatePush(t *testing.T) {
	needTool(t, "skopeo")
	reg := regStart(t, regConfig{})
	tmp := t.TempDir()
	amdDir, armDir, out := filepath.Join(tmp, "amd"), filepath.Join(tmp, "arm"), filepath.Join(tmp, "out")
	amd := regPutImage(t, amdDir, "app", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil,
		regTarLayer(t, map[string][]byte{"etc/arch": []byte("amd64\n")}, nil))
	arm := regPutImage(t, armDir, "app", ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, nil,
		regTarLayer(t, map[string][]byte{"etc/arch": []byte("arm64\n")}, nil))
	// Created with one platform, the other added: each platform comes
	// from its image's config, annotations from both.
	d0 := digest.Digest(strings.TrimSpace(strata(t, "index", "create", "--annotation", "org.opencontainers.image.version=1", out+":app", amdDir+":app")))
	d := digest.Digest(strings.TrimSpace(strata(t, "index", "add", "--annotation", "org.example.built-by=ci", out+":app", armDir+":app")))
	if d == d0 || regResolve(t, out, "app") != d {
		t.Fatalf("index add: %s (create made %s)", d, d0)
	}
	regFsck(t, out)
	ref := reg.listen + "/multi/app:1"
	strata(t, "push", out+":app", ref)
	raw := mustRun(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	if got := digest.FromString(raw); got != d {
		t.Errorf("registry serves index %s, strata made %s", got, d)
	}
	var idx ocispec.Index
	if err := json.Unmarshal([]byte(raw), &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 2 || idx.Manifests[0].Digest != amd.Digest || idx.Manifests[1].Digest != arm.Digest ||
		idx.Manifests[0].Platform == nil || idx.Manifests[0].Platform.Architecture != "amd64" ||
		idx.Manifests[1].Platform == nil || idx.Manifests[1].Platform.Architecture != "arm64" || idx.Manifests[1].Platform.Variant != "v8" ||
		idx.Annotations["org.opencontainers.image.version"] != "1" || idx.Annotations["org.example.built-by"] != "ci" {
		t.Errorf("index %s", raw)
	}
	for _, p := range []string{"amd64", "arm64"} {
		mustRun(t, "skopeo", "inspect", "--tls-verify=false", "--override-arch", p, "docker://"+ref)
	}
	// A pull of the whole index back; rm of a platform, pushed again.
	back := filepath.Join(tmp, "back")
	strata(t, "pull", "--all-platforms", ref, back+":app")
	if got := regResolve(t, back, "app"); got != d {
		t.Errorf("pulled %s, want %s", got, d)
	}
	// A mutated index is pushed whole too: each platform changed.
	dm := digest.Digest(strings.TrimSpace(strata(t, "mutate", "--env", "MODE=prod", "--annotation", "index:org.example.stage=prod", out+":app", out+":app-prod")))
	prodRef := reg.listen + "/multi/app:1-prod"
	strata(t, "push", out+":app-prod", prodRef)
	if got := regRawDigest(t, "--tls-verify=false", "docker://"+prodRef); got != dm {
		t.Errorf("registry serves the mutated index as %s, strata made %s", got, dm)
	}
	for _, p := range []string{"amd64", "arm64"} {
		if cfg := mustRun(t, "skopeo", "inspect", "--config", "--tls-verify=false", "--override-arch", p, "docker://"+prodRef); !strings.Contains(cfg, "MODE=prod") {
			t.Errorf("mutated %s config: %s", p, cfg)
		}
	}
	d1 := digest.Digest(strings.TrimSpace(strata(t, "index", "rm", out+":app", "linux/arm64")))
	strata(t, "push", out+":app", ref)
	raw = mustRun(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+ref)
	if err := json.Unmarshal([]byte(raw), &idx); err != nil {
		t.Fatal(err)
	}
	if digest.FromString(raw) != d1 || len(idx.Manifests) != 1 || idx.Manifests[0].Digest != amd.Digest {
		t.Errorf("after index rm linux/arm64 the registry serves %s", raw)
	}
}

// A docker-archive saved with --referrers (an SBOM untagged and a cosign
// signature named in the archive's OCI part) still loads and runs in
// Docker 26, with either image store.
func TestDocker26LoadsArchiveWithReferrers(t *testing.T) {
	src := d26Image(t)
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "sbom.json"), []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	strata(t, "attach", "--artifact-type", "application/spdx+json", src+":"+d26Layered, filepath.Join(tmp, "sbom.json"))
	img := d26Read(t, src, d26Layered)
	l, err := layout.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	sig := regPutImage(t, src, "", ocispec.Platform{OS: "linux", Architecture: "amd64"}, nil)
	if err := l.Tag(sig, "example.com/strata/layered:"+layout.CosignTag(img.Descriptor.Digest, ".sig")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	archive := filepath.Join(tmp, "with-referrers.tar")
	strata(t, "save", "--referrers", "-o", archive, src+":"+d26Layered)
	for _, store := range docker26Stores {
		t.Run(store.name, func(t *testing.T) {
			e := startDocker26(t, store.containerd)
			d26Loaded(t, e, e.must(t, "load", "-i", archive), d26Layered)
			d26Run(t, e, d26Layered, d26LayeredOut)
		})
	}
}

// The referrers of a multi-platform image's platform manifests come with
// the platforms pulled, and only with them.
func TestReferrersPlatforms(t *testing.T) {
	oras := needTool(t, "oras")
	reg := regStart(t, regConfig{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	idx, _, arm := regPutMultiImage(t, src, "multi", 11)
	ref := reg.listen + "/multi/app"
	strata(t, "push", src+":multi", ref+":v1")
	if err := os.WriteFile(filepath.Join(tmp, "arm.txt"), []byte("arm64 notes\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/vnd.example.notes", ref+"@"+arm.Digest.String(), "arm.txt")
	runTool(t, tmp, nil, oras, "attach", "--plain-http", "--artifact-type", "application/vnd.example.index-notes", ref+"@"+idx.Digest.String(), "arm.txt")

	all := filepath.Join(tmp, "all")
	strata(t, "pull", "--all-platforms", "--referrers", ref+":v1", all+":app")
	if got := referrerDigests(t, all+":app"); len(got) != 2 {
		t.Errorf("all platforms: referrers %v, want the index's and arm64's", got)
	}
	amd := filepath.Join(tmp, "amd")
	strata(t, "pull", "--platform", "linux/amd64", "--referrers", ref+":v1", amd+":app")
	if got := referrerDigests(t, amd+":app"); len(got) != 0 {
		t.Errorf("amd64 alone: referrers %v, want none", got)
	}
	armDir := filepath.Join(tmp, "arm")
	strata(t, "pull", "--platform", "linux/arm64", "--referrers", ref+":v1", armDir+":app")
	if got := referrerDigests(t, armDir+":app"); len(got) != 1 {
		t.Errorf("arm64 alone: referrers %v, want arm64's", got)
	}
	// Pushed elsewhere whole, the referrers follow.
	strata(t, "push", "--referrers", all+":app", reg.listen+"/copy/app:v1")
	if got := orasDiscover(t, oras, reg.listen+"/copy/app@"+arm.Digest.String(), "--plain-http"); len(got) != 1 {
		t.Errorf("oras discover of arm64 in the copy: %v", got)
	}
	regFsck(t, all)
}
