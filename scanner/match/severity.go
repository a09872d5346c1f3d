package match

import (
	"encoding/json"
	"regexp"
	"strings"

	"github.com/quay/claircore"

	"github.com/divds/divds/scoring"
)

// Severity normalization. claircore's NormalizedSeverity is used as it
// is, except where it is not the vendor's plain meaning:
//
//	source              vendor value            DIVDS severity
//	Debian tracker      unimportant             negligible
//	                    low                     low
//	                    medium                  medium
//	                    high                    high
//	                    not yet assigned, end-of-life, other   unknown
//	Ubuntu OVAL         negligible/low/medium/high/critical     same
//	                    untriaged               unknown
//	Alpine secdb, SUSE  (none given)            unknown: NVD's CVSS decides (severity_source)
//	others              claircore's normalization
//
// claircore maps Debian urgencies one level up (low to Medium,
// unimportant to Low); DIVDS does not.
func Normalize(v *claircore.Vulnerability) (raw string, sev scoring.Severity) {
	raw = strings.TrimSpace(v.Severity)
	if isDebian(v) {
		return raw, debianUrgency(raw)
	}
	if raw == "" {
		raw = ubuntuTitleSeverity(v.Name)
	}
	return raw, FromClaircore(v.NormalizedSeverity)
}

func isDebian(v *claircore.Vulnerability) bool {
	return v.Dist != nil && v.Dist.DID == "debian" || strings.HasPrefix(v.Updater, "debian/")
}

func debianUrgency(u string) scoring.Severity {
	// The tracker marks urgencies it set from a guess with '*'.
	switch strings.ToLower(strings.TrimRight(u, "*")) {
	case "unimportant":
		return scoring.Negligible
	case "low":
		return scoring.Low
	case "medium":
		return scoring.Medium
	case "high":
		return scoring.High
	}
	return scoring.Unknown
}

// FromClaircore converts claircore's normalized severity.
func FromClaircore(s claircore.Severity) scoring.Severity {
	switch s {
	case claircore.Negligible:
		return scoring.Negligible
	case claircore.Low:
		return scoring.Low
	case claircore.Medium:
		return scoring.Medium
	case claircore.High:
		return scoring.High
	case claircore.Critical:
		return scoring.Critical
	}
	return scoring.Unknown
}

var ubuntuTitle = regexp.MustCompile(` - ([a-z]+)\.$`)

// ubuntuTitleSeverity reads the priority Canonical writes at the end of
// an OVAL title ("CVE-2013-4235 on Ubuntu 18.04 LTS (bionic) - low."):
// the OVAL records carry no other raw severity.
func ubuntuTitleSeverity(name string) string {
	if m := ubuntuTitle.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return ""
}

var (
	cveID = regexp.MustCompile(`CVE-\d{4}-\d{4,}`)
	// advisoryID is a vendor advisory: ALAS-2020-1234, RHSA-2020:1234,
	// DSA-4567-1, USN-1234-1, XSA-284, GHSA-xxxx-xxxx-xxxx.
	advisoryID = regexp.MustCompile(`\b(?:GHSA(?:-[0-9a-z]{4}){3}|[A-Z][A-Z0-9]{1,9}-\d+(?:[-:]\d+)*)\b`)
)

// ID returns the first of IDs.
func ID(v *claircore.Vulnerability) string { return IDs(v)[0] }

// IDs returns the CVEs a vulnerability is about, each once and in order:
// a tracker entry may name several in one string (Alpine's secdb lists
// "CVE-2017-5715 CVE-2017-5754 CVE-2018-3646" for one fix). With no CVE,
// it is the vendor advisory it names (ALAS-2020-1234); placeholders such
// as "CVE-????-?????" are not IDs. Only a name with neither is kept as
// written, so that the finding is not lost. Ubuntu's names are OVAL
// titles.
func IDs(v *claircore.Vulnerability) []string {
	var out []string
	seen := map[string]bool{}
	for _, text := range []string{v.Self.Name, v.Name} {
		for _, id := range cveID.FindAllString(text, -1) {
			if !seen[id] {
				seen[id] = true
				out = append(out, id)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, text := range []string{v.Self.Name, v.Name} {
		if id := advisoryID.FindString(text); id != "" && !strings.HasPrefix(id, "CVE-") {
			return []string{id}
		}
	}
	return []string{strings.TrimSpace(v.Name)}
}

// CVSS is NVD's rating from the clair.cvss enrichment (NVD API 2.0
// cvssData).
type CVSS struct {
	Score    float64
	Severity scoring.Severity
	Vector   string
}

// ParseCVSS reads one clair.cvss enrichment record's data.
func ParseCVSS(raw json.RawMessage) (CVSS, bool) {
	var d struct {
		BaseScore    float64 `json:"baseScore"`
		BaseSeverity string  `json:"baseSeverity"`
		VectorString string  `json:"vectorString"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || d.BaseScore < 0 || d.BaseScore > 10 {
		return CVSS{}, false
	}
	c := CVSS{Score: d.BaseScore, Vector: d.VectorString, Severity: scoring.SeverityFromCVSS(d.BaseScore)}
	if s, err := scoring.ParseSeverity(d.BaseSeverity); err == nil && d.BaseSeverity != "" {
		c.Severity = s
	}
	return c, true
}
