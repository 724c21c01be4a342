package dockerfile

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/strata-oci/strata/layout"
)

func newConfig(t testing.TB) *layout.Config {
	t.Helper()
	return layout.NewConfig(ocispec.Platform{OS: "linux", Architecture: "amd64"})
}

// runtimeConfig returns the config object as generic JSON, so that fields
// outside ocispec.ImageConfig (Healthcheck, OnBuild) are seen as stored.
func runtimeConfig(t testing.TB, c *layout.Config) map[string]any {
	t.Helper()
	b, err := c.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(b, &top); err != nil {
		t.Fatal(err)
	}
	return top.Config
}

func asJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		changes []string
		field   string
		want    string // JSON of the field's value; "" means absent
	}{
		{"cmd exec form", []string{`CMD ["/bin/app", "--flag"]`}, "Cmd", `["/bin/app","--flag"]`},
		{"cmd shell form", []string{`CMD echo "hi there"`}, "Cmd", `["/bin/sh","-c","echo \"hi there\""]`},
		{"cmd lowercase", []string{`cmd ["a"]`}, "Cmd", `["a"]`},
		{"entrypoint exec form", []string{`ENTRYPOINT ["/init"]`}, "Entrypoint", `["/init"]`},
		{"entrypoint shell form", []string{`ENTRYPOINT exec /init`}, "Entrypoint", `["/bin/sh","-c","exec /init"]`},
		{"entrypoint resets cmd", []string{`ENTRYPOINT ["/init"]`}, "Cmd", ``},
		{"cmd before entrypoint kept", []string{`CMD ["x"]`, `ENTRYPOINT ["/init"]`}, "Cmd", `["x"]`},
		{"cmd after entrypoint", []string{`ENTRYPOINT ["/init"]`, `CMD ["x"]`}, "Cmd", `["x"]`},
		{"env key=value", []string{`ENV A=1 B="two words"`}, "Env", `["A=1","B=two words"]`},
		{"env legacy form", []string{`ENV A one two`}, "Env", `["A=one two"]`},
		{"env replaces", []string{`ENV A=1 B=2`, `ENV A=3`}, "Env", `["A=3","B=2"]`},
		{"env expands", []string{`ENV A=1`, `ENV B=${A}2`}, "Env", `["A=1","B=12"]`},
		{"expose", []string{`EXPOSE 80 443/udp`}, "ExposedPorts", `{"443/udp":{},"80/tcp":{}}`},
		{"expose range and add", []string{`EXPOSE 8000-8002`, `EXPOSE 80/TCP`}, "ExposedPorts", `{"80/tcp":{},"8000/tcp":{},"8001/tcp":{},"8002/tcp":{}}`},
		{"expose variable", []string{`ENV P="80 81"`, `EXPOSE $P`}, "ExposedPorts", `{"80/tcp":{},"81/tcp":{}}`},
		{"label", []string{`LABEL a=b "c d"="e f"`}, "Labels", `{"a":"b","c d":"e f"}`},
		{"label replaces", []string{`LABEL a=b x=y`, `LABEL a=c`}, "Labels", `{"a":"c","x":"y"}`},
		{"user", []string{`USER 1000:1000`}, "User", `"1000:1000"`},
		{"user expands", []string{`ENV U=nobody`, `USER $U`}, "User", `"nobody"`},
		{"volume json", []string{`VOLUME ["/data", "/logs"]`}, "Volumes", `{"/data":{},"/logs":{}}`},
		{"volume adds", []string{`VOLUME /a`, `VOLUME /b /c`}, "Volumes", `{"/a":{},"/b":{},"/c":{}}`},
		{"workdir", []string{`WORKDIR /srv`}, "WorkingDir", `"/srv"`},
		{"workdir relative", []string{`WORKDIR /srv`, `WORKDIR app/../www`}, "WorkingDir", `"/srv/www"`},
		{"workdir cleaned", []string{`WORKDIR /a//b/`}, "WorkingDir", `"/a/b"`},
		{"stopsignal name", []string{`STOPSIGNAL SIGINT`}, "StopSignal", `"SIGINT"`},
		{"stopsignal number", []string{`STOPSIGNAL 9`}, "StopSignal", `"9"`},
		{"stopsignal rt", []string{`STOPSIGNAL SIGRTMIN+3`}, "StopSignal", `"SIGRTMIN+3"`},
		{"healthcheck shell", []string{`HEALTHCHECK --interval=5s --timeout=3s --retries=2 --start-period=1m --start-interval=2s CMD curl -f http://localhost/`}, "Healthcheck",
			`{"Interval":5000000000,"Retries":2,"StartInterval":2000000000,"StartPeriod":60000000000,"Test":["CMD-SHELL","curl -f http://localhost/"],"Timeout":3000000000}`},
		{"healthcheck exec", []string{`HEALTHCHECK CMD ["/bin/check", "-q"]`}, "Healthcheck", `{"Test":["CMD","/bin/check","-q"]}`},
		{"healthcheck none", []string{`HEALTHCHECK NONE`}, "Healthcheck", `{"Test":["NONE"]}`},
		{"healthcheck replaces", []string{`HEALTHCHECK CMD a`, `HEALTHCHECK CMD b`}, "Healthcheck", `{"Test":["CMD-SHELL","b"]}`},
		{"onbuild", []string{`ONBUILD RUN make`}, "OnBuild", `["RUN make"]`},
		{"onbuild appends", []string{`ONBUILD RUN make`, `onbuild COPY . /src`}, "OnBuild", `["RUN make","COPY . /src"]`},
		{"several in one change", []string{"ENV A=1\nUSER bin"}, "User", `"bin"`},
		{"line continuation", []string{"CMD echo \\\n  hi"}, "Cmd", `["/bin/sh","-c","echo   hi"]`},
		{"no changes", nil, "Cmd", ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newConfig(t)
			if err := Apply(c, tc.changes); err != nil {
				t.Fatal(err)
			}
			rc := runtimeConfig(t, c)
			v, ok := rc[tc.field]
			if tc.want == "" {
				if ok {
					t.Fatalf("%s = %s, want it absent", tc.field, asJSON(t, v))
				}
				return
			}
			if !ok {
				t.Fatalf("%s not set; config %s", tc.field, asJSON(t, rc))
			}
			if got := asJSON(t, v); got != tc.want {
				t.Fatalf("%s = %s, want %s", tc.field, got, tc.want)
			}
		})
	}
}

// Changes land in the typed OCI fields too, and a config that already has
// fields keeps the ones the changes do not touch.
func TestApplyMergesIntoExisting(t *testing.T) {
	base := []byte(`{"architecture":"arm64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
		"config":{"Env":["PATH=/usr/bin","A=0"],"Cmd":["bash"],"Shell":["/bin/bash","-o","pipefail","-c"],
		"Labels":{"keep":"me"},"Healthcheck":{"Test":["CMD","old"]},"OnBuild":["RUN old"],"WorkingDir":"/base","Custom":42}}`)
	c, err := layout.ParseConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	err = Apply(c, []string{"ENV A=1 PATH=$PATH:/opt/bin", "LABEL new=1", "ONBUILD RUN new", "WORKDIR sub", "CMD run it", "EXPOSE 22"})
	if err != nil {
		t.Fatal(err)
	}
	img, err := c.Image()
	if err != nil {
		t.Fatal(err)
	}
	want := ocispec.ImageConfig{
		Env:          []string{"PATH=/usr/bin:/opt/bin", "A=1"},
		Cmd:          []string{"/bin/bash", "-o", "pipefail", "-c", "run it"},
		Labels:       map[string]string{"keep": "me", "new": "1"},
		WorkingDir:   "/base/sub",
		ExposedPorts: map[string]struct{}{"22/tcp": {}},
	}
	if !reflect.DeepEqual(img.Config, want) {
		t.Fatalf("config %+v, want %+v", img.Config, want)
	}
	rc := runtimeConfig(t, c)
	if got := asJSON(t, rc["OnBuild"]); got != `["RUN old","RUN new"]` {
		t.Fatalf("OnBuild %s", got)
	}
	if got := asJSON(t, rc["Healthcheck"]); got != `{"Test":["CMD","old"]}` {
		t.Fatalf("Healthcheck %s", got)
	}
	if got := asJSON(t, rc["Custom"]); got != `42` {
		t.Fatalf("unknown field lost: %s", got)
	}
	if img.Architecture != "arm64" {
		t.Fatal("top-level field lost")
	}
}

func TestApplyErrors(t *testing.T) {
	tests := []struct {
		change string
		want   string
	}{
		{"RUN make", "RUN is not a valid change command"},
		{"FROM debian", "FROM is not a valid change command"},
		{"COPY a b", "COPY is not a valid change command"},
		{"ADD a b", "ADD is not a valid change command"},
		{"SHELL [\"/bin/bash\"]", "SHELL is not a valid change command"},
		{"ARG x", "ARG is not a valid change command"},
		{"MAINTAINER me", "MAINTAINER is not a valid change command"},
		{"BOGUS x", "BOGUS is not a valid change command"},
		{"ONBUILD ONBUILD RUN x", "ONBUILD ONBUILD"},
		{"ONBUILD FROM x", "isn't allowed as an ONBUILD trigger"},
		{"EXPOSE 80/foo", "invalid proto"},
		{"EXPOSE http", "not a port number"},
		{"EXPOSE 90-80", "end before start"},
		{"EXPOSE 70000", "not a port number"},
		{"STOPSIGNAL SIGNOPE", "invalid signal"},
		{"STOPSIGNAL 0", "invalid signal"},
		{"HEALTHCHECK --interval=x CMD a", "interval"},
		{"HEALTHCHECK --retries=-1 CMD a", "retries"},
		{"HEALTHCHECK FOO a", "Unknown type"},
		{"ENV", "ENV"},
		{"LABEL", "LABEL"},
		{"USER", "USER"},
		{"WORKDIR", "WORKDIR"},
		{`VOLUME [""]`, "empty string"},
		{"CMD <<EOF\necho hi\nEOF", "ECHO is not a valid change command"},
	}
	for _, tc := range tests {
		t.Run(tc.change, func(t *testing.T) {
			err := Apply(newConfig(t), []string{tc.change})
			if err == nil {
				t.Fatalf("%q accepted", tc.change)
			}
			if !errors.Is(err, ErrInvalidChange) {
				t.Fatalf("error %v is not ErrInvalidChange", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"80", []string{"80/tcp"}},
		{"53/udp", []string{"53/udp"}},
		{"9/SCTP", []string{"9/sctp"}},
		{"1-3/udp", []string{"1/udp", "2/udp", "3/udp"}},
	}
	for _, tc := range tests {
		got, err := parsePorts(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("parsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func FuzzApply(f *testing.F) {
	for _, s := range []string{
		`CMD ["a","b"]`, `ENTRYPOINT exec x`, `ENV A=1 B="2 3"`, `EXPOSE 80-90/udp`,
		`LABEL "a b"=c`, `USER x:y`, `VOLUME ["/v"]`, `WORKDIR ../x`, `STOPSIGNAL RTMIN+2`,
		`HEALTHCHECK --interval=1s CMD true`, `ONBUILD RUN x`, "ENV A=$B\\\n C", `# escape=` + "`\nCMD a",
		`CMD ["unterminated`, `RUN x`, "CMD <<EOF\nx\nEOF",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, change string) {
		c := newConfig(t)
		err := Apply(c, []string{change})
		if err != nil {
			if !errors.Is(err, ErrInvalidChange) {
				t.Fatalf("error %v is not ErrInvalidChange", err)
			}
			return
		}
		if _, err := c.Image(); err != nil {
			t.Fatalf("change %q made an unreadable config: %v", change, err)
		}
	})
}
