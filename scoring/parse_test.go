package scoring

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultYAMLIsDefault(t *testing.T) {
	p, err := Parse("default.yaml", DefaultYAML())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Normalized(), Default().Normalized()) {
		t.Fatalf("default YAML parses to\n%+v\nwant\n%+v", p.Normalized(), Default().Normalized())
	}
}

// TestParseEmpty: an empty policy is what a write cut short looks like;
// it is refused, never read as the (laxer) defaults.
func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "# only a comment\n", "---\n", "~\n", "\n\n   \n"} {
		p, err := Parse("p.yaml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), "p.yaml: the file is empty") || !strings.Contains(err.Error(), "policy default") {
			t.Errorf("%q: %v, %v", in, p, err)
		}
	}
}

func TestParseFull(t *testing.T) {
	in := `
threshold: 150.5
weights: {critical: 20, low: 1}
mode: audit
actions: [push, run, push]
on_error: allow
unfixed: ignore
severity_source: highest
running: stop
db: {max_age: 2d}
whitelist:
  - id: CVE-2019-1543
    package: openssl
    images: ["registry.example.com/app:*", ubuntu]
    expires: 2027-06-30
    reason: behind the proxy
overrides:
  - images: ["registry.prod.example.com/*"]
    threshold: 50
    weights: {high: 10}
`
	p, err := Parse("p.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Threshold = 15050
	want.Weights[Critical] = 2000
	want.Weights[Low] = 100
	want.Mode = ModeAudit
	want.Actions = []Action{ActionPush, ActionRun}
	want.OnError = OnErrorAllow
	want.Unfixed = UnfixedIgnore
	want.SeveritySource = SourceHighest
	want.Running = RunningStop
	want.DB.MaxAge = 48 * time.Hour
	want.Whitelist = []Entry{{ID: "CVE-2019-1543", Package: "openssl", Images: []string{"registry.example.com/app:*", "ubuntu"},
		Expires: time.Date(2027, 6, 30, 0, 0, 0, 0, time.UTC), Reason: "behind the proxy", Line: 12}}
	th := Points(5000)
	want.Overrides = []Override{{Images: []string{"registry.prod.example.com/*"}, Threshold: &th, Weights: map[Severity]Points{High: 1000}, Line: 18}}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", p, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // substrings of the error
	}{
		{"unknown key", "threshold: 200\nthreshhold: 10\n", []string{"p.yaml:2:1", "threshhold", "unknown key"}},
		{"unknown nested key", "db:\n  maxage: 1h\n", []string{"p.yaml:2:3", "db.maxage", "unknown key"}},
		{"negative weight", "weights:\n  high: -1\n", []string{"p.yaml:2:9", "weights.high", "negative"}},
		{"non-numeric weight", "weights:\n  high: lots\n", []string{"p.yaml:2:9", "weights.high", "must be a number"}},
		{"unknown severity", "weights:\n  severe: 3\n", []string{"p.yaml:2:3", "weights.severe", "unknown key", "critical"}},
		{"bad date", "whitelist:\n  - id: CVE-1\n    expires: 2026-13-01\n", []string{"p.yaml:3:14", "whitelist[0].expires", "bad date"}},
		{"date as text", "whitelist:\n  - id: CVE-1\n    expires: next week\n", []string{"p.yaml:3:14", "whitelist[0].expires", "YYYY-MM-DD"}},
		{"threshold as text", "threshold: \"200\"\n", []string{"p.yaml:1:12", "threshold", "must be a number"}},
		{"threshold as word", "threshold: two hundred\n", []string{"p.yaml:1:12", "threshold", "must be a number"}},
		{"threshold negative", "threshold: -5\n", []string{"threshold", "negative"}},
		{"threshold three decimals", "threshold: 1.005\n", []string{"threshold", "two decimal"}},
		{"threshold exponent", "threshold: 1e3\n", []string{"threshold", "plain decimal"}},
		{"missing id", "whitelist:\n  - package: openssl\n", []string{"p.yaml:2:5", "whitelist[0].id", "required"}},
		{"empty id", "whitelist:\n  - id: ''\n", []string{"whitelist[0].id", "CVE"}},
		{"bad mode", "mode: lenient\n", []string{"p.yaml:1:7", "mode", "enforce, audit"}},
		{"bad action", "actions: [pull, exec]\n", []string{"actions[1]", "unknown action"}},
		{"actions not a list", "actions: pull\n", []string{"actions", "must be a list"}},
		{"bad on_error", "on_error: ignore\n", []string{"on_error"}},
		{"bad unfixed", "unfixed: skip\n", []string{"unfixed"}},
		{"bad severity_source", "severity_source: cvss\n", []string{"severity_source"}},
		{"bad running", "running: kill\n", []string{"running", "report", "stop"}},
		{"bad duration", "db: {max_age: forever}\n", []string{"db.max_age", "bad duration"}},
		{"zero duration", "db: {max_age: 0s}\n", []string{"db.max_age", "positive"}},
		{"bad image pattern", "whitelist:\n  - id: CVE-1\n    images: [\"UPPER/Case\"]\n", []string{"whitelist[0].images[0]", "not an image reference"}},
		{"override without images", "overrides:\n  - threshold: 5\n", []string{"overrides[0].images", "required"}},
		{"repeated key", "threshold: 1\nthreshold: 2\n", []string{"p.yaml:2:1", "threshold", "repeated"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a mapping"}},
		{"bad yaml", "threshold: [\n", []string{"p.yaml", "not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.in))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Errorf("error %T is not a *PolicyError", err)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("p.yaml", []byte("threshold: x\nmode: y\nweights: {high: -1}\n"))
	if err == nil || strings.Count(err.Error(), "p.yaml:") != 3 {
		t.Fatalf("want three located errors, got %v", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	_, err := Parse("p.yaml", make([]byte, MaxPolicySize+1))
	if err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("got %v", err)
	}
}

func TestMatchImage(t *testing.T) {
	tests := []struct {
		pat  string
		refs []string
		want bool
	}{
		{"ubuntu", []string{"ubuntu:18.04"}, true},
		{"ubuntu", []string{"docker.io/library/ubuntu:18.04"}, true},
		{"docker.io/library/ubuntu", []string{"ubuntu"}, true},
		{"ubuntu:latest", []string{"ubuntu"}, true},
		{"ubuntu:18.04", []string{"ubuntu:20.04"}, false},
		{"ubuntu", []string{"myubuntu"}, false},
		{"registry.example.com/*", []string{"registry.example.com/team/app:1"}, true},
		{"registry.example.com/*", []string{"registry.example.com.evil.org/app"}, false},
		{"*/app:*", []string{"registry.example.com/app:1"}, true},
		{"ubuntu:*", []string{"ubuntu:18.04"}, true},
		{"ubuntu:1?.04", []string{"ubuntu:18.04"}, true},
		{"sha256:abc", []string{"sha256:abc"}, true},
		{"sha256:abc", []string{"sha256:abd"}, false},
		{"anything", nil, false},
	}
	for _, tt := range tests {
		if got := MatchImage(tt.pat, tt.refs); got != tt.want {
			t.Errorf("MatchImage(%q, %q) = %v, want %v", tt.pat, tt.refs, got, tt.want)
		}
	}
}

func TestGlobMatchPathological(t *testing.T) {
	p := strings.Repeat("*a", 200) + "b"
	s := strings.Repeat("a", 400)
	if globMatch(p, s) {
		t.Fatal("must not match")
	}
}
