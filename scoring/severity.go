package scoring

import (
	"fmt"
	"strings"
)

// Severity is the normalized severity of a finding, the key of the weight
// table. The zero value is Unknown, so a finding nobody rated weighs the
// "unknown" weight (0 by default) rather than something arbitrary.
type Severity int

// The six severities of the design's Table 4, in increasing order.
const (
	Unknown Severity = iota
	Negligible
	Low
	Medium
	High
	Critical
	numSeverities
)

var severityNames = [numSeverities]string{"unknown", "negligible", "low", "medium", "high", "critical"}

// Severities lists every severity from Unknown to Critical.
func Severities() []Severity {
	out := make([]Severity, numSeverities)
	for i := range out {
		out[i] = Severity(i)
	}
	return out
}

// String returns the lower-case name used in policies and reports.
func (s Severity) String() string {
	if s < 0 || s >= numSeverities {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity name, ignoring case.
func ParseSeverity(name string) (Severity, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	for i, s := range severityNames {
		if s == n {
			return Severity(i), nil
		}
	}
	return Unknown, fmt.Errorf("unknown severity %q (want one of %s)", name, strings.Join(severityNames[:], ", "))
}

// MarshalText makes severities print by name in JSON and YAML.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// SeverityFromCVSS maps a CVSS v3 base score to its qualitative rating
// (FIRST's CVSS v3.1 specification, section 5). A score of 0 means "none",
// which DIVDS weighs as negligible only when the score is known; callers
// pass ok=false for an unknown score.
func SeverityFromCVSS(score float64) Severity {
	switch {
	case score <= 0:
		return Unknown
	case score < 4.0:
		return Low
	case score < 7.0:
		return Medium
	case score < 9.0:
		return High
	default:
		return Critical
	}
}

// Weights maps each severity to its weight.
type Weights [numSeverities]Points

// DefaultWeights are the design's Table 4.
func DefaultWeights() Weights {
	return Weights{Unknown: 0, Negligible: 50, Low: 200, Medium: 545, High: 795, Critical: 950}
}

// Of returns the weight of s; an out-of-range severity weighs as Unknown.
func (w Weights) Of(s Severity) Points {
	if s < 0 || s >= numSeverities {
		return w[Unknown]
	}
	return w[s]
}
