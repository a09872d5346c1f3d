package scoring

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Finding is one vulnerability found in one package of an image.
type Finding struct {
	// ID is the CVE or advisory ID.
	ID string
	// Package is the binary package name; Source its source package, when
	// the distribution has one (whitelist entries match either).
	Package string
	Source  string
	// Version is the installed version, FixedIn the first fixed one ("" when
	// there is no fix yet).
	Version string
	FixedIn string
	// VendorSeverity is the distribution's severity as it wrote it
	// ("unimportant", "Moderate", "low"); Severity is its normalization.
	VendorSeverity string
	Severity       Severity
	// CVSS is NVD's CVSS base score, 0 when unknown; NVDSeverity its rating.
	CVSS        float64
	NVDSeverity Severity
	// Layer is the digest of the layer that introduced the package.
	Layer string
}

// Scored is a finding as the policy judged it.
type Scored struct {
	Finding
	// Counted is the severity that picked the weight (see SeveritySource).
	Counted Severity
	// Weight is what the finding adds to the score (0 when approved or ignored).
	Weight Points
	// Approved is set when a whitelist entry approves the finding;
	// ApprovedBy is that entry.
	Approved   bool
	ApprovedBy *Entry
	// Ignored says why an unapproved finding counts 0 ("unfixed"), if it does.
	Ignored string
}

// Verdict is the gate's answer.
type Verdict string

// The two verdicts.
const (
	Allow Verdict = "allow"
	Deny  Verdict = "deny"
)

// Counts are per-severity counts of findings.
type Counts struct {
	Unapproved [numSeverities]int
	Approved   [numSeverities]int
	Ignored    int
}

// Result is the outcome of Evaluate.
type Result struct {
	Score     Points
	Threshold Points
	// Exceeded is Score > Threshold, whatever the mode.
	Exceeded bool
	// Verdict is Deny iff Exceeded and the mode is enforce.
	Verdict Verdict
	Mode    Mode
	Counts  Counts
	// Findings are deduplicated and sorted by weight (highest first), then
	// ID, package and version.
	Findings []Scored
	// Expired lists the lapsed whitelist entries that would otherwise have
	// approved a finding of this image.
	Expired      []Entry
	PolicyDigest string
	// Coverage is how far the image could be diagnosed (ApplyCoverage),
	// CoverageNote what was missing. Refused is set when the policy
	// refuses the image for it; the Verdict is then Deny in enforce mode.
	Coverage     Coverage
	CoverageNote string
	Refused      bool
	// UnknownWeight is what a finding of unknown severity weighs here.
	UnknownWeight Points
}

// Evaluate scores an image, known by refs (names, digests, ID), under the
// policy: image_score = Σ weight(severity) over unapproved findings, and the
// image is denied when image_score > θ (the design's Eq. 2–3: equality
// allows). Each (ID, package, version) counts once. The result does not
// depend on the order of findings.
func Evaluate(p *Policy, refs []string, findings []Finding, now time.Time) Result {
	threshold, weights := p.For(refs)
	res := Result{Threshold: threshold, Mode: p.Mode, PolicyDigest: p.Digest(), UnknownWeight: weights.Of(Unknown)}

	scored := make([]Scored, 0, len(findings))
	for _, f := range findings {
		s := Scored{Finding: f, Counted: p.pick(f)}
		s.Weight = weights.Of(s.Counted)
		scored = append(scored, s)
	}
	// Group duplicates with the heaviest (then smallest by every other
	// field) first and keep that one, so the result is order independent.
	slices.SortFunc(scored, func(a, b Scored) int {
		return cmp.Or(compareKey(a, b), compareScored(a, b))
	})
	scored = slices.CompactFunc(scored, func(a, b Scored) bool { return compareKey(a, b) == 0 })

	expired := map[int]bool{}
	for i := range scored {
		s := &scored[i]
		if idx, lapsed := p.approval(s.Finding, refs, now); idx >= 0 {
			if lapsed {
				expired[idx] = true
			} else {
				e := p.Whitelist[idx]
				s.Approved, s.ApprovedBy = true, &e
			}
		}
		switch {
		case s.Approved:
			res.Counts.Approved[s.Counted]++
			s.Weight = 0
		case p.Unfixed == UnfixedIgnore && s.FixedIn == "":
			s.Ignored = "unfixed"
			s.Weight = 0
			res.Counts.Ignored++
		default:
			res.Counts.Unapproved[s.Counted]++
			res.Score += s.Weight
		}
	}
	slices.SortFunc(scored, compareScored)
	res.Findings = scored
	for i, e := range p.Whitelist {
		if expired[i] {
			res.Expired = append(res.Expired, e)
		}
	}
	res.Exceeded = res.Score > res.Threshold
	res.Verdict = Allow
	if res.Exceeded && p.Mode != ModeAudit {
		res.Verdict = Deny
	}
	return res
}

// pick chooses the severity that selects the weight.
func (p *Policy) pick(f Finding) Severity {
	vendor, nvd := f.Severity, f.NVDSeverity
	if nvd == Unknown && f.CVSS > 0 {
		nvd = SeverityFromCVSS(f.CVSS)
	}
	switch p.SeveritySource {
	case SourceNVD:
		if nvd != Unknown {
			return nvd
		}
		return vendor
	case SourceHighest:
		return max(vendor, nvd)
	default:
		if vendor != Unknown {
			return vendor
		}
		return nvd
	}
}

// approval finds the index of the whitelist entry for f, -1 if none. A
// live entry wins over a lapsed one; lapsed reports that the entry found
// has expired.
func (p *Policy) approval(f Finding, refs []string, now time.Time) (idx int, lapsed bool) {
	expired := -1
	for i := range p.Whitelist {
		w := &p.Whitelist[i]
		if !strings.EqualFold(w.ID, f.ID) {
			continue
		}
		if w.Package != "" && w.Package != f.Package && w.Package != f.Source {
			continue
		}
		if len(w.Images) > 0 && !matchAny(w.Images, refs) {
			continue
		}
		if w.expired(now) {
			if expired < 0 {
				expired = i
			}
			continue
		}
		return i, false
	}
	return expired, expired >= 0
}

// compareKey orders by the identity of a finding: (ID, package, version).
func compareKey(a, b Scored) int {
	return cmp.Or(
		cmp.Compare(strings.ToUpper(a.ID), strings.ToUpper(b.ID)),
		cmp.Compare(a.Package, b.Package),
		cmp.Compare(a.Version, b.Version),
	)
}

func compareScored(a, b Scored) int {
	return cmp.Or(
		cmp.Compare(b.Weight, a.Weight),
		cmp.Compare(strings.ToUpper(a.ID), strings.ToUpper(b.ID)),
		cmp.Compare(a.Package, b.Package),
		cmp.Compare(a.Version, b.Version),
		cmp.Compare(b.Counted, a.Counted),
		cmp.Compare(a.ID, b.ID),
		cmp.Compare(a.Source, b.Source),
		cmp.Compare(a.FixedIn, b.FixedIn),
		cmp.Compare(a.VendorSeverity, b.VendorSeverity),
		cmp.Compare(b.Severity, a.Severity),
		cmp.Compare(b.CVSS, a.CVSS),
		cmp.Compare(b.NVDSeverity, a.NVDSeverity),
		cmp.Compare(a.Layer, b.Layer),
	)
}
