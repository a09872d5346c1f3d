package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scoring"
)

// run executes the CLI in process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	dir := t.TempDir()
	def := defaults{policyPath: filepath.Join(dir, "policy.yaml"), stateDir: filepath.Join(dir, "state")}
	code := executeWith(context.Background(), def, args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFileTo(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicyDefaultChecks(t *testing.T) {
	code, def, _ := run(t, "policy", "default")
	if code != 0 || !strings.Contains(def, "threshold: 200") {
		t.Fatalf("policy default: %d\n%s", code, def)
	}
	p := writeFile(t, "policy.yaml", def)
	code, out, errs := run(t, "policy", "check", p)
	if code != 0 || !strings.Contains(out, "threshold: 200.00") || !strings.Contains(out, "medium: 5.45") {
		t.Fatalf("policy check of the default: %d\n%s\n%s", code, out, errs)
	}
	// --policy is the default FILE.
	if code, _, errs := run(t, "--policy", p, "policy", "check"); code != 0 {
		t.Fatalf("policy check via --policy: %d %s", code, errs)
	}
}

func TestPolicyCheckRejects(t *testing.T) {
	tests := []struct {
		name, policy string
		want         []string
	}{
		{"unknown key", "threshold: 200\nwieghts: {high: 1}\n", []string{":2:1:", "wieghts", "unknown key"}},
		{"negative weight", "weights:\n  critical: -9.5\n", []string{":2:13:", "weights.critical", "negative"}},
		{"unknown severity", "weights:\n  important: 4\n", []string{":2:3:", "weights.important", "unknown key"}},
		{"bad date", "whitelist:\n  - id: CVE-2019-1543\n    expires: 2026-02-30\n", []string{":3:14:", "whitelist[0].expires", "bad date"}},
		{"threshold as text", "threshold: high\n", []string{":1:12:", "threshold", "must be a number"}},
		{"threshold quoted", "threshold: '200'\n", []string{":1:12:", "threshold", "must be a number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, "policy.yaml", tt.policy)
			code, out, errs := run(t, "policy", "check", p)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errs)
			}
			for _, w := range append(tt.want, p) {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr %q does not name %q", errs, w)
				}
			}
		})
	}
}

func TestPolicyCheckMissingFile(t *testing.T) {
	code, _, errs := run(t, "policy", "check", filepath.Join(t.TempDir(), "nope.yaml"))
	if code != 1 || !strings.Contains(errs, "nope.yaml") {
		t.Fatalf("%d %s", code, errs)
	}
}

func TestEvaluate(t *testing.T) {
	tests := []struct {
		report string
		policy string
		code   int
		want   string
	}{
		{"report-7.95.json", "", 0, "image score 7.95 <= threshold 200.00"},
		{"report-76.20.json", "", 0, "image score 76.20 <= threshold 200.00"},
		{"report-183.45.json", "", 0, "image score 183.45 <= threshold 200.00"},
		{"report-297.40.json", "", 2, "image score 297.40 > threshold 200.00"},
		{"report-297.40.json", "threshold: 297.4\n", 0, "image score 297.40 <= threshold 297.40"},
		{"report-297.40.json", "mode: audit\n", 0, "would be denied"},
		{"report-183.45.json", "weights: {critical: 10}\n", 0, "image score 192.45"},
		{"report-183.45.json", "weights: {critical: 11}\n", 2, "image score 210.45 > threshold"},
		{"report-297.40.json", "whitelist:\n  - id: CVE-2019-1001\n    images: ['registry.example.com/app']\n", 2, "image score 287.90"},
		{"report-297.40.json", "overrides:\n  - images: ['registry.example.com/*']\n    threshold: 300\n", 0, "threshold 300.00"},
		// trusted.example.com/app:1 is a name without a repository digest:
		// anyone could have tagged the image so, and it earns nothing.
		{"report-297.40.json", "whitelist:\n  - id: CVE-2019-1001\n    images: ['trusted.example.com/app']\n", 2, "image score 297.40"},
		{"report-297.40.json", "overrides:\n  - images: ['trusted.example.com/*']\n    threshold: 300\n", 2, "threshold 200.00"},
		{"report-297.40.json", "whitelist:\n  - id: CVE-2019-1001\n    images: ['sha256:*']\n", 2, "image score 287.90"},
	}
	for _, tt := range tests {
		t.Run(tt.report+"/"+tt.policy, func(t *testing.T) {
			args := []string{"evaluate", filepath.Join("testdata", tt.report)}
			if tt.policy != "" {
				args = append([]string{"--policy", writeFile(t, "p.yaml", tt.policy)}, args...)
			} else {
				args = append([]string{"--policy", filepath.Join(t.TempDir(), "absent.yaml")}, args...)
				// A named but absent policy is an error...
				if code, _, errs := run(t, args...); code != 1 || !strings.Contains(errs, "absent.yaml") {
					t.Fatalf("absent --policy: %d %s", code, errs)
				}
				// ...while the unnamed default path may be absent.
				args = args[2:]
			}
			code, out, errs := run(t, args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out, errs)
			}
			if !strings.Contains(out, tt.want) {
				t.Fatalf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestEvaluateJSON(t *testing.T) {
	code, out, errs := run(t, "evaluate", "--format", "json", "testdata/report-297.40.json")
	if code != 2 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, `"score": 297.40`) {
		t.Fatalf("score not exact in JSON:\n%s", out)
	}
	rep, err := report.Read(strings.NewReader(out))
	if err != nil {
		t.Fatalf("JSON output does not read back: %v", err)
	}
	ev := rep.Evaluation
	if ev.Verdict != scoring.Deny || ev.Score != 29740 || ev.Threshold != 20000 || ev.Counts.Unapproved["critical"] != 21 {
		t.Fatalf("evaluation %+v", ev)
	}
	// A saved report with an evaluation re-evaluates under a new policy.
	p := writeFile(t, "r.json", out)
	if code, out, _ := run(t, "--policy", writeFile(t, "p.yaml", "threshold: 300\n"), "evaluate", p); code != 0 || !strings.Contains(out, "ALLOW") {
		t.Fatalf("re-evaluation: %d %s", code, out)
	}
}

func TestEvaluateBadReports(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"not json", "hello", "not JSON"},
		{"no schema", `{"image":{}}`, "no schema_version"},
		{"future schema", `{"schema_version": 99}`, "schema_version 99 is not supported"},
		{"unknown field", `{"schema_version":1,"findngs":[]}`, "findngs"},
		{"bad severity", `{"schema_version":1,"findings":[{"id":"CVE-1","package":"a","version":"1","fixed_in":"","severity":"severe"}]}`, "unknown severity"},
		{"empty id", `{"schema_version":1,"findings":[{"id":"","package":"a","version":"1","fixed_in":""}]}`, "id is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := run(t, "evaluate", writeFile(t, "r.json", tt.content))
			if code != 1 || !strings.Contains(errs, tt.want) {
				t.Fatalf("exit %d, stderr %q, want 1 and %q", code, errs, tt.want)
			}
		})
	}
}

func TestVersionAndUsage(t *testing.T) {
	if code, out, _ := run(t, "version"); code != 0 || !strings.HasPrefix(out, "divds-authz ") {
		t.Fatalf("version: %d %s", code, out)
	}
	if code, _, errs := run(t, "evaluate"); code != 1 || !strings.Contains(errs, "arg") {
		t.Fatalf("missing argument: %d %s", code, errs)
	}
	if code, _, errs := run(t, "--log-level", "loud", "version"); code != 1 || !strings.Contains(errs, "log-level") {
		t.Fatalf("bad log level: %d %s", code, errs)
	}
	if code, _, errs := run(t, "evaluate", "--format", "xml", "testdata/report-7.95.json"); code != 1 || !strings.Contains(errs, "xml") {
		t.Fatalf("bad format: %d %s", code, errs)
	}
}

func TestSampleReportsAreValidJSON(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if !json.Valid(b) {
			t.Errorf("%s is not valid JSON", f)
		}
	}
}
