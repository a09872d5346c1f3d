package scoring

import "fmt"

// Coverage says whether an image could be diagnosed at all: a score of 0
// means "nothing known to be vulnerable" only when its packages could be
// matched against data for its distribution's release.
type Coverage string

// The coverages. The empty Coverage is a report from before coverage was
// recorded, judged by its score alone.
const (
	// Diagnosed: a recognized distribution whose release the database
	// holds data for.
	Diagnosed Coverage = "diagnosed"
	// NoData: packages of a distribution or release the database holds no
	// data for (Alpine 3.12 with data up to 3.11; CentOS).
	NoData Coverage = "no-data"
	// UnknownDistribution: packages, but no distribution recognized (no
	// os-release), so nothing to match them against.
	UnknownDistribution Coverage = "unknown-distribution"
	// NoPackages: no package database (scratch, distroless static): no
	// OS packages to diagnose.
	NoPackages Coverage = "no-packages"
)

// Undiagnosed reports whether c is an image whose packages could not be
// matched.
func (c Coverage) Undiagnosed() bool { return c == NoData || c == UnknownDistribution }

// Decision is what the policy does with an image it cannot diagnose.
type Decision string

// The decisions.
const (
	DecideDeny  Decision = "deny"
	DecideAllow Decision = "allow"
)

// ApplyCoverage decides an image that could not be diagnosed as the
// policy says (undiagnosed, no_packages), whatever its score: an image
// whose packages cannot be matched scores 0 without being clean. why says
// what was missing, for the summary.
func (r *Result) ApplyCoverage(p *Policy, c Coverage, why string) {
	r.Coverage, r.CoverageNote = c, why
	var d Decision
	switch {
	case c.Undiagnosed():
		d = p.Undiagnosed
	case c == NoPackages:
		d = p.NoPackages
	default:
		return
	}
	if d != DecideDeny {
		return
	}
	r.Refused = true
	if r.Mode == ModeEnforce {
		r.Verdict = Deny
	}
}

// coverageLine is the part of the summary about coverage.
func (r Result) coverageLine() string {
	if !r.Refused {
		return ""
	}
	key := "undiagnosed"
	if r.Coverage == NoPackages {
		key = "no_packages"
	}
	return fmt.Sprintf("image not diagnosed (%s: %s; %s: deny); ", r.Coverage, r.CoverageNote, key)
}
