package main

import (
	"strings"
	"testing"
)

func TestParseBuildArgs(t *testing.T) {
	t.Setenv("STRATA_TEST_FROM_ENV", "env value")
	got, err := parseBuildArgs([]string{"A=1", "B=", "C=x=y", "STRATA_TEST_FROM_ENV", "STRATA_TEST_UNSET_ARG"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "1", "B": "", "C": "x=y", "STRATA_TEST_FROM_ENV": "env value"}
	if len(got) != len(want) {
		t.Errorf("got %d args, want %d (an unset NAME is left out)", len(got), len(want))
	}
	for k, v := range want {
		if got[k] == nil || *got[k] != v {
			t.Errorf("%s: got %v, want %q", k, got[k], v)
		}
	}
	if _, err := parseBuildArgs([]string{"=v"}); err == nil {
		t.Error("--build-arg =v accepted")
	}
}

func TestParseSecrets(t *testing.T) {
	t.Setenv("STRATA_TEST_SECRET", "from env")
	for _, c := range []struct {
		in      string
		id      string
		file    string
		data    string
		wantErr string
	}{
		{in: "id=a,src=/s/file", id: "a", file: "/s/file"},
		{in: "id=a,source=/s/file,type=file", id: "a", file: "/s/file"},
		{in: "src=/s/tok", id: "tok", file: "/s/tok"},
		{in: "id=e,env=STRATA_TEST_SECRET", id: "e", data: "from env"},
		{in: "env=STRATA_TEST_SECRET", id: "STRATA_TEST_SECRET", data: "from env"},
		{in: "id=a", wantErr: "want id=ID"},
		{in: "id=a,env=STRATA_TEST_SECRET_UNSET", wantErr: "is not set"},
		{in: "id=a,src=/f,mode=1", wantErr: "unknown field"},
		{in: "id=a,src=/f,type=ssh", wantErr: "want file or env"},
	} {
		got, err := parseSecrets([]string{c.in})
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%s: error %v, want %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		s, ok := got[c.id]
		if !ok || s.File != c.file || string(s.Data) != c.data {
			t.Errorf("%s: got %+v, want id %s file %q data %q", c.in, got, c.id, c.file, c.data)
		}
	}
}

func TestFirstLine(t *testing.T) {
	if got := firstLine("RUN <<EOT\necho\nEOT"); got != "RUN <<EOT ..." {
		t.Errorf("firstLine: %q", got)
	}
	if got := firstLine("COPY a b"); got != "COPY a b" {
		t.Errorf("firstLine: %q", got)
	}
}

func FuzzParseBuildArgs(f *testing.F) {
	f.Add("A=1")
	f.Add("=")
	f.Add("PATH")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseBuildArgs([]string{s})
		if err != nil {
			return
		}
		for k, v := range got {
			if k == "" || v == nil {
				t.Fatalf("parseBuildArgs(%q) gave %q=%v", s, k, v)
			}
		}
	})
}

func FuzzParseSecrets(f *testing.F) {
	f.Add("id=a,src=/f")
	f.Add("env=HOME")
	f.Add(",=,id=")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSecrets([]string{s})
		if err != nil {
			return
		}
		if len(got) != 1 {
			t.Fatalf("parseSecrets(%q) gave %d secrets", s, len(got))
		}
		for id, sec := range got {
			if id == "" {
				t.Fatalf("parseSecrets(%q) gave a secret with no id", s)
			}
			if sec.File == "" && sec.Data == nil {
				t.Fatalf("parseSecrets(%q) gave secret %s with neither file nor data", s, id)
			}
		}
	})
}
