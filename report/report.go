// Package report defines the DIVDS scan report: what `scan --format json`
// writes, what `evaluate` reads and what the plugin logs. docs/report.md
// documents it; SchemaVersion changes whenever a field changes meaning.
package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/divds/divds/scoring"
)

// SchemaVersion is the version of the report format this code writes and reads.
const SchemaVersion = 1

// MaxSize bounds a report read from a file: the largest real images give
// a few MB, so 64 MiB is generous.
const MaxSize = 64 << 20

// Report is one image's diagnosis.
type Report struct {
	SchemaVersion int         `json:"schema_version"`
	Image         Image       `json:"image"`
	Packages      []Package   `json:"packages"`
	Findings      []Finding   `json:"findings"`
	Evaluation    *Evaluation `json:"evaluation,omitempty"`
	Database      Database    `json:"database"`
	// Coverage says how far the image could be diagnosed; absent in
	// reports from before it was recorded.
	Coverage *Coverage `json:"coverage,omitempty"`
	// Warnings say what the scan could not read or had to work around.
	Warnings []string `json:"warnings,omitempty"`
}

// Image is the image's metadata: the design's Table 1.
type Image struct {
	ID           string     `json:"id"`
	Names        []string   `json:"names"`
	Digests      []string   `json:"digests"`
	Created      *time.Time `json:"created,omitempty"`
	OS           string     `json:"os,omitempty"`
	Architecture string     `json:"architecture,omitempty"`
	Distribution string     `json:"distribution,omitempty"`
	Layers       []Layer    `json:"layers"`
}

// Layer is one filesystem layer, bottom first.
type Layer struct {
	Digest    string `json:"digest,omitempty"`
	DiffID    string `json:"diff_id"`
	CreatedBy string `json:"created_by,omitempty"`
}

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source,omitempty"`
	Kind    string `json:"kind"`
	Layer   string `json:"layer,omitempty"`
}

// Coverage says whether the image's packages could be matched at all.
type Coverage struct {
	// Status is diagnosed, no-data, unknown-distribution or no-packages
	// (scoring.Coverage).
	Status string `json:"status"`
	// Reason says what was found and what was missing.
	Reason string `json:"reason,omitempty"`
	// Data names the vulnerability data that covers the distribution's
	// release (updater names), when it is diagnosed.
	Data []string `json:"data,omitempty"`
	// UnknownSeverity counts findings whose severity is unknown: they
	// weigh the unknown weight (0 by default).
	UnknownSeverity int `json:"unknown_severity"`
}

// CVSS is NVD's rating of a vulnerability.
type CVSS struct {
	Score    float64 `json:"score"`
	Severity string  `json:"severity,omitempty"`
	Vector   string  `json:"vector,omitempty"`
}

// Finding is one vulnerability in one package.
type Finding struct {
	ID             string `json:"id"`
	Package        string `json:"package"`
	Source         string `json:"source,omitempty"`
	Version        string `json:"version"`
	FixedIn        string `json:"fixed_in"`
	Severity       string `json:"severity"`
	VendorSeverity string `json:"vendor_severity,omitempty"`
	// SeveritySource names the tracker Severity comes from when neither
	// the vendor nor NVD rates the finding ("ubuntu", "debian", …).
	SeveritySource string   `json:"severity_source,omitempty"`
	CVSS           *CVSS    `json:"cvss,omitempty"`
	Layer          string   `json:"layer,omitempty"`
	Description    string   `json:"description,omitempty"`
	Links          []string `json:"links,omitempty"`
}

// Evaluation is the IVE result.
type Evaluation struct {
	Score            scoring.Points            `json:"score"`
	Threshold        scoring.Points            `json:"threshold"`
	Exceeded         bool                      `json:"exceeded"`
	Verdict          scoring.Verdict           `json:"verdict"`
	Refused          bool                      `json:"refused,omitempty"`
	Mode             scoring.Mode              `json:"mode"`
	Counts           Counts                    `json:"counts"`
	Approved         []Approval                `json:"approved"`
	ExpiredWhitelist []scoring.NormalizedEntry `json:"expired_whitelist"`
	PolicyDigest     string                    `json:"policy_digest"`
	EvaluatedAt      time.Time                 `json:"evaluated_at"`
}

// Counts are finding counts by severity name.
type Counts struct {
	Unapproved map[string]int `json:"unapproved"`
	Approved   map[string]int `json:"approved"`
	Ignored    int            `json:"ignored"`
}

// Approval is an approved finding and the entry that approved it.
type Approval struct {
	ID      string                  `json:"id"`
	Package string                  `json:"package"`
	Version string                  `json:"version"`
	Entry   scoring.NormalizedEntry `json:"entry"`
}

// Database says which vulnerability data produced the findings.
type Database struct {
	Revision  uint64     `json:"revision"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Sample is true when the findings come from the small sample database
	// shipped for demos; such a report says nothing about real exposure.
	Sample bool `json:"sample,omitempty"`
}

// Read parses and validates a report. It reads at most MaxSize bytes.
func Read(r io.Reader) (*Report, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("report is larger than %d bytes", MaxSize)
	}
	var probe struct {
		SchemaVersion *int `json:"schema_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("report is not JSON: %w", err)
	}
	switch {
	case probe.SchemaVersion == nil:
		return nil, errors.New("report has no schema_version: is this a DIVDS scan report?")
	case *probe.SchemaVersion != SchemaVersion:
		return nil, fmt.Errorf("report schema_version %d is not supported (this divds-authz reads version %d); rescan with this version", *probe.SchemaVersion, SchemaVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rep Report
	if err := dec.Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	if err := rep.Validate(); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Validate checks what evaluate relies on.
func (r *Report) Validate() error {
	var errs []error
	for i, f := range r.Findings {
		if strings.TrimSpace(f.ID) == "" {
			errs = append(errs, fmt.Errorf("findings[%d]: id is empty", i))
		}
		if f.Package == "" {
			errs = append(errs, fmt.Errorf("findings[%d] (%s): package is empty", i, f.ID))
		}
		if f.Severity != "" {
			if _, err := scoring.ParseSeverity(f.Severity); err != nil {
				errs = append(errs, fmt.Errorf("findings[%d] (%s): severity: %w", i, f.ID, err))
			}
		}
		if f.CVSS != nil && (f.CVSS.Score < 0 || f.CVSS.Score > 10) {
			errs = append(errs, fmt.Errorf("findings[%d] (%s): cvss.score %v is outside 0-10", i, f.ID, f.CVSS.Score))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid report: %w", errors.Join(errs...))
	}
	return nil
}

// Write encodes the report as indented JSON.
func (r *Report) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// Refs lists the references whitelist and override patterns are matched
// against: the image ID, its repository digests, and those of its names
// whose repository the image was pulled from (a repository digest names
// it). A name anyone can give an image with docker tag must not earn it a
// scoped approval: "trusted.example.com/app:1" counts only for an image
// that came from trusted.example.com/app.
func (im Image) Refs() []string {
	return TrustedRefs(im.ID, im.Digests, im.Names)
}

// TrustedRefs is Refs for an image with the given ID and repository
// digests, known by names.
func TrustedRefs(id string, digests, names []string) []string {
	repos := map[string]bool{}
	var refs []string
	for _, d := range digests {
		if n, err := reference.ParseNormalizedNamed(d); err == nil {
			if _, ok := n.(reference.Canonical); ok {
				repos[n.Name()] = true
				refs = append(refs, d)
			}
		}
	}
	for _, name := range names {
		if n, err := reference.ParseNormalizedNamed(name); err == nil && repos[n.Name()] {
			refs = append(refs, name)
		}
	}
	if id != "" {
		refs = append(refs, id)
	}
	return refs
}

// Name is the best human name for the image.
func (im Image) Name() string {
	switch {
	case len(im.Names) > 0:
		return im.Names[0]
	case len(im.Digests) > 0:
		return im.Digests[0]
	case im.ID != "":
		return im.ID
	}
	return "(unnamed image)"
}
