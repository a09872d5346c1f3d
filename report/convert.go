package report

import (
	"time"

	"github.com/divds/divds/scoring"
)

// ScoringFinding converts a report finding for the evaluator. The report
// was validated, so a bad severity cannot occur; it would weigh Unknown.
func (f Finding) ScoringFinding() scoring.Finding {
	sev, _ := scoring.ParseSeverity(f.Severity)
	out := scoring.Finding{
		ID: f.ID, Package: f.Package, Source: f.Source, Version: f.Version, FixedIn: f.FixedIn,
		VendorSeverity: f.VendorSeverity, Severity: sev, Layer: f.Layer,
	}
	if f.Severity == "" {
		out.Severity = scoring.Unknown
	}
	if f.CVSS != nil {
		out.CVSS = f.CVSS.Score
		if s, err := scoring.ParseSeverity(f.CVSS.Severity); err == nil && f.CVSS.Severity != "" {
			out.NVDSeverity = s
		}
	}
	return out
}

// ScoringFindings converts all findings.
func (r *Report) ScoringFindings() []scoring.Finding {
	out := make([]scoring.Finding, len(r.Findings))
	for i, f := range r.Findings {
		out[i] = f.ScoringFinding()
	}
	return out
}

// Evaluate scores the report under p and stores the evaluation in it.
func (r *Report) Evaluate(p *scoring.Policy, now time.Time) scoring.Result {
	res := scoring.Evaluate(p, r.Image.Refs(), r.ScoringFindings(), now)
	if c := r.Coverage; c != nil {
		res.ApplyCoverage(p, scoring.Coverage(c.Status), c.Reason)
	}
	r.Evaluation = NewEvaluation(res, now)
	return res
}

// NewEvaluation converts an IVE result to its report form.
func NewEvaluation(res scoring.Result, now time.Time) *Evaluation {
	ev := &Evaluation{
		Score: res.Score, Threshold: res.Threshold, Exceeded: res.Exceeded,
		Verdict: res.Verdict, Refused: res.Refused, Mode: res.Mode, PolicyDigest: res.PolicyDigest,
		Counts: Counts{
			Unapproved: map[string]int{}, Approved: map[string]int{}, Ignored: res.Counts.Ignored,
		},
		Approved:         []Approval{},
		ExpiredWhitelist: []scoring.NormalizedEntry{},
		EvaluatedAt:      now.UTC(),
	}
	for _, s := range scoring.Severities() {
		if n := res.Counts.Unapproved[s]; n > 0 {
			ev.Counts.Unapproved[s.String()] = n
		}
		if n := res.Counts.Approved[s]; n > 0 {
			ev.Counts.Approved[s.String()] = n
		}
	}
	for _, f := range res.Findings {
		if f.Approved {
			ev.Approved = append(ev.Approved, Approval{ID: f.ID, Package: f.Package, Version: f.Version, Entry: scoring.NormalizeEntry(*f.ApprovedBy)})
		}
	}
	for _, e := range res.Expired {
		ev.ExpiredWhitelist = append(ev.ExpiredWhitelist, scoring.NormalizeEntry(e))
	}
	return ev
}
