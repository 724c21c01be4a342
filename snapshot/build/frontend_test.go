package build

import (
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestArgsScoping(t *testing.T) {
	f, err := parseBytes("Containerfile", []byte(`ARG G=global
ARG H=${G}-h
FROM scratch
ARG G
ARG LOCAL=local-$G
ARG UNSET
ARG TARGETARCH
`))
	if err != nil {
		t.Fatal(err)
	}
	host := ocispec.Platform{OS: "linux", Architecture: "amd64"}
	meta, err := resolveMeta(f, map[string]string{"H": "cli"}, platformArgs(host, host))
	if err != nil {
		t.Fatal(err)
	}
	if meta["G"] != "global" || meta["H"] != "global-h" || meta["TARGETPLATFORM"] != "linux/amd64" {
		t.Errorf("meta args: %v", meta)
	}
	a := &args{options: map[string]string{"H": "cli", "HTTP_PROXY": "http://p"}, meta: meta, declared: map[string]*string{}}
	if got := a.allowed(); !reflect.DeepEqual(got, []string{"HTTP_PROXY=http://p"}) {
		t.Errorf("a stage sees %v before any ARG", got)
	}
	local := "local-global"
	a.declare("G", nil)
	a.declare("LOCAL", &local)
	a.declare("UNSET", nil)
	a.declare("TARGETARCH", nil)
	want := []string{"G=global", "HTTP_PROXY=http://p", "LOCAL=local-global", "TARGETARCH=amd64"}
	if got := a.allowed(); !reflect.DeepEqual(got, want) {
		t.Errorf("allowed %v, want %v", got, want)
	}
	// ENV wins over an arg of the same name; proxies stay out of history.
	if got := a.filtered([]string{"G=env"}); !reflect.DeepEqual(got, []string{"HTTP_PROXY=http://p", "LOCAL=local-global", "TARGETARCH=amd64"}) {
		t.Errorf("filtered %v", got)
	}
	if got := a.historyArgs(nil); strings.Contains(strings.Join(got, " "), "PROXY") {
		t.Errorf("history args %v hold a proxy", got)
	}
}

func TestTargetAndStages(t *testing.T) {
	f, err := parseBytes("Containerfile", []byte("FROM scratch AS one\nFROM one AS Two\nFROM scratch\nCOPY --from=two /a /a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if i, err := f.target("TWO"); err != nil || i != 1 {
		t.Errorf("target TWO: %d, %v", i, err)
	}
	if _, err := f.target("three"); err == nil {
		t.Errorf("an unknown target is accepted")
	}
	if i, ok := f.stageIndex("0", 2); !ok || i != 0 {
		t.Errorf("stage by index: %d %v", i, ok)
	}
	if _, ok := f.stageIndex("two", 1); ok {
		t.Errorf("a later stage is found")
	}
	b := &builder{f: f, options: map[string]string{}, meta: map[string]string{}}
	need, err := b.needed(2)
	if err != nil || !need[0] || !need[1] || !need[2] {
		t.Errorf("needed: %v, %v", need, err)
	}
	need, _ = b.needed(0)
	if need[1] || need[2] {
		t.Errorf("target 0 needs %v", need)
	}
}

func TestParseErrorsNameTheLine(t *testing.T) {
	for src, want := range map[string]string{
		"FROM scratch\nNOPE x\n":     "line 2",
		"RUN true\n":                 "FROM",
		"FROM scratch\nCOPY x\n":     "line 2",
		"":                           "no instructions",
		"FROM a b c d\n":             "line 1",
		"FROM scratch\nEXPOSE\n":     "line 2",
		"FROM scratch\nONBUILD FROM": "line 2",
	} {
		_, err := parseBytes("Containerfile", []byte(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"FROM scratch\nRUN echo hi\n",
		"ARG B=x\nFROM $B AS a\nCOPY --from=a /x /y\nRUN --mount=type=cache,target=/c true\n",
		"FROM scratch\nRUN <<EOT\necho\nEOT\n",
		"# escape=`\nFROM scratch\nENV A=`\n  b\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		pf, err := parseBytes("Containerfile", []byte(s))
		if err != nil {
			return
		}
		b := &builder{f: pf, options: map[string]string{}, meta: map[string]string{}}
		if _, err := resolveMeta(pf, nil, nil); err != nil {
			return
		}
		_, _ = b.needed(len(pf.stages) - 1)
	})
}
