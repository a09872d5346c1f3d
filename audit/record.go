// Package audit is the DIVDS audit trail: one record per decision on a
// gated action, sent to syslog (RFC 5424) through a bounded queue that
// survives syslog outages, and copied to stderr as a JSON line.
package audit

import (
	"time"
)

// Record is one decision.
type Record struct {
	Time      time.Time      `json:"time"`
	RequestID string         `json:"request_id"`
	Action    string         `json:"action"`
	Image     string         `json:"image,omitempty"`
	ImageID   string         `json:"image_id,omitempty"`
	Container string         `json:"container,omitempty"` // a running container's name, in a review
	Decision  string         `json:"decision"`            // allow or deny: what the plugin answered; a review's flagged, stopped or stop-failed
	Verdict   string         `json:"verdict,omitempty"`
	Mode      string         `json:"mode,omitempty"`
	Score     string         `json:"score,omitempty"`
	Threshold string         `json:"threshold,omitempty"`
	Exceeded  bool           `json:"exceeded,omitempty"`
	Counts    map[string]int `json:"counts,omitempty"`
	Approved  int            `json:"approved,omitempty"`
	Top       []string       `json:"top,omitempty"`
	// Coverage says whether the image could be diagnosed (diagnosed,
	// no-data, unknown-distribution, no-packages).
	Coverage string  `json:"coverage,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	Error    string  `json:"error,omitempty"`
	Revision uint64  `json:"db_revision,omitempty"`
	Sample   bool    `json:"db_sample,omitempty"`
	Policy   string  `json:"policy_digest,omitempty"`
	Duration float64 `json:"duration_ms"`
	Phase    string  `json:"phase"` // request or response
}

// Auditor receives records. Implementations must not block the caller.
type Auditor interface {
	Record(Record)
}

// Multi sends each record to several auditors.
type Multi []Auditor

// Record implements Auditor.
func (m Multi) Record(r Record) {
	for _, a := range m {
		a.Record(r)
	}
}
