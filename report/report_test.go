package report

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/divds/divds/scoring"
)

// TestDocExample keeps docs/report.md honest: its example must read back
// and evaluate to what it claims.
func TestDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/report.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```json\n")
	if !ok {
		t.Fatal("docs/report.md has no JSON example")
	}
	example, _, _ := strings.Cut(rest, "```")
	rep, err := Read(strings.NewReader(example))
	if err != nil {
		t.Fatalf("example does not read: %v", err)
	}
	saved := *rep.Evaluation
	res := rep.Evaluate(scoring.Default(), time.Now())
	if res.Score != saved.Score || res.Verdict != saved.Verdict || rep.Evaluation.PolicyDigest != saved.PolicyDigest {
		t.Fatalf("example claims %s %s %s, evaluation gives %s %s %s", saved.Score, saved.Verdict, saved.PolicyDigest, res.Score, res.Verdict, rep.Evaluation.PolicyDigest)
	}
}

func TestRoundTrip(t *testing.T) {
	created := time.Date(2020, 4, 1, 0, 0, 0, 0, time.UTC)
	rep := &Report{
		SchemaVersion: SchemaVersion,
		Image:         Image{ID: "sha256:aa", Names: []string{"a:1"}, Created: &created, Layers: []Layer{{DiffID: "sha256:l1"}}},
		Packages:      []Package{{Name: "openssl", Version: "1", Kind: "binary", Layer: "sha256:l1"}},
		Findings:      []Finding{{ID: "CVE-1", Package: "openssl", Version: "1", Severity: "critical", CVSS: &CVSS{Score: 9.8}}},
	}
	rep.Evaluate(scoring.Default(), created)
	var buf bytes.Buffer
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.Evaluation.Score != 950 || back.Findings[0].ScoringFinding().CVSS != 9.8 || !back.Image.Created.Equal(created) {
		t.Fatalf("round trip lost data: %+v", back)
	}
}

func TestReadTooLarge(t *testing.T) {
	r := strings.NewReader(`{"schema_version":1,"x":"` + strings.Repeat("a", MaxSize) + `"}`)
	if _, err := Read(r); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Fatalf("got %v", err)
	}
}

func TestTableColorOnlyWhenAsked(t *testing.T) {
	rep := &Report{SchemaVersion: 1, Findings: []Finding{{ID: "CVE-1", Package: "a", Severity: "critical"}}}
	p := scoring.Default()
	p.Threshold = 0
	res := rep.Evaluate(p, time.Now())
	var plain, color bytes.Buffer
	rep.WriteTable(&plain, res, TableOptions{})
	rep.WriteTable(&color, res, TableOptions{Color: true})
	if strings.Contains(plain.String(), "\x1b[") || !strings.Contains(color.String(), "\x1b[") {
		t.Fatal("colour must appear only when asked for")
	}
	var quiet bytes.Buffer
	rep.WriteTable(&quiet, res, TableOptions{Quiet: true})
	if strings.Count(quiet.String(), "\n") != 1 || !strings.HasPrefix(quiet.String(), "Verdict: DENY") {
		t.Fatalf("quiet output: %q", quiet.String())
	}
}
