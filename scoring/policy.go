package scoring

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Mode says whether a verdict is enforced.
type Mode string

const (
	// ModeEnforce denies what scores over the threshold.
	ModeEnforce Mode = "enforce"
	// ModeAudit computes and records every decision but never denies; for
	// rolling DIVDS out on a host before enforcing it.
	ModeAudit Mode = "audit"
)

// Action names a gate.
type Action string

// The gates a policy can switch on.
const (
	ActionPull Action = "pull"
	ActionPush Action = "push"
	ActionRun  Action = "run"
)

// AllActions lists every gate, in the order they are documented.
func AllActions() []Action { return []Action{ActionPull, ActionPush, ActionRun} }

// OnError is what a gate does when it cannot compute a verdict (no
// database, a scanner failure, an unreachable daemon).
type OnError string

const (
	// OnErrorDeny fails closed; the default, since a security gate that
	// opens when it breaks is one an attacker only has to break.
	OnErrorDeny OnError = "deny"
	// OnErrorAllow fails open, for hosts where availability wins.
	OnErrorAllow OnError = "allow"
)

// Unfixed says how findings with no fixed version are scored.
type Unfixed string

const (
	// UnfixedCount scores them like any other finding (the default).
	UnfixedCount Unfixed = "count"
	// UnfixedIgnore scores them 0: nothing can be upgraded to remove them.
	UnfixedIgnore Unfixed = "ignore"
)

// SeveritySource picks which severity selects a finding's weight.
type SeveritySource string

const (
	// SourceVendor uses the distribution's severity, falling back to NVD's
	// when the vendor gives none (the default: the vendor knows how the
	// package is built and used in its release).
	SourceVendor SeveritySource = "vendor"
	// SourceNVD uses NVD's CVSS severity, falling back to the vendor's.
	SourceNVD SeveritySource = "nvd"
	// SourceHighest uses the higher of the two.
	SourceHighest SeveritySource = "highest"
)

// PullScan says when a pull is scanned.
type PullScan string

const (
	// PullScanAfter lets the daemon pull, then scans what arrived and
	// removes it if it fails (the design's flow; the default).
	PullScanAfter PullScan = "after"
	// PullScanBefore scans the image in the registry first and denies the
	// pull itself, so a failing image never lands; it needs registry
	// access (anonymous, or credentials the admin gives the plugin).
	PullScanBefore PullScan = "before"
)

// Running says what a review of the running containers does with one
// whose image the policy now denies. Containers the daemon restarts by
// itself (restart policies, at boot) and images that a database update
// or a policy change turned failing never pass a gate again.
type Running string

const (
	// RunningReport audits and logs each such container and counts it in
	// divds_running_denied_containers (the default).
	RunningReport Running = "report"
	// RunningStop also stops it (in mode: enforce), as docker stop does.
	RunningStop Running = "stop"
)

// DBPolicy holds the database requirements.
type DBPolicy struct {
	// MaxAge is the oldest a vulnerability database may be before a gate
	// treats it as an error (see OnError). Default 120h.
	MaxAge time.Duration
}

// Entry is one whitelist entry: an approved finding.
type Entry struct {
	// ID is the CVE or advisory ID; required; matched ignoring case.
	ID string
	// Package, when set, limits the entry to findings in that package
	// (binary or source name).
	Package string
	// Images, when set, limits the entry to images matching one of these
	// reference patterns (see MatchImage).
	Images []string
	// Expires, when set, is the last day (UTC) the entry approves anything.
	Expires time.Time
	// Reason is the admin's note; shown, never interpreted.
	Reason string
	// Line is the entry's line in the policy file, for messages.
	Line int
}

// Override changes the threshold or weights for matching images, such as
// a stricter θ for a production registry. The first matching override wins.
type Override struct {
	Images    []string
	Threshold *Points
	Weights   map[Severity]Points
	Line      int
}

// Policy is the admin's policy. The zero value is not valid: start from
// Default or Parse.
type Policy struct {
	Threshold      Points
	Weights        Weights
	Whitelist      []Entry
	Mode           Mode
	Actions        []Action
	OnError        OnError
	Unfixed        Unfixed
	SeveritySource SeveritySource
	PullScan       PullScan
	Running        Running
	DB             DBPolicy
	Overrides      []Override
	// AllowPluginAdmin lets the Docker API disable, remove, reconfigure or
	// upgrade the divds plugin itself. Default false: a user of the docker
	// CLI must not be able to switch the gate off.
	AllowPluginAdmin bool
	// AllowBuild lets the daemon build images. Default true: a build's
	// RUN steps execute its base image, which no gate sees (the
	// Dockerfile is inside a tar the plugin is never sent); the result
	// is gated when it runs or ships. False refuses /build outright.
	AllowBuild bool
	// Undiagnosed decides an image whose packages cannot be matched (no
	// data for its release, or no distribution recognized). Default deny:
	// such an image scores 0 without being known to be clean.
	Undiagnosed Decision
	// NoPackages decides an image with no package database (scratch,
	// distroless static). Default allow: it has no OS packages to be
	// vulnerable, and package-based scanning can say no more.
	NoPackages Decision
	// AllowSwarmJoin lets the daemon init or join a swarm. Default false:
	// a node runs the tasks that any manager of its swarm accepts, and a
	// manager without DIVDS accepts any image.
	AllowSwarmJoin bool
}

// DefaultThreshold is the design's θ.
const DefaultThreshold = Points(20000)

// DefaultMaxAge is the default db.max_age.
const DefaultMaxAge = 120 * time.Hour

// Default returns the policy that applies when the file sets nothing.
func Default() *Policy {
	return &Policy{
		Threshold:      DefaultThreshold,
		Weights:        DefaultWeights(),
		Mode:           ModeEnforce,
		Actions:        AllActions(),
		OnError:        OnErrorDeny,
		Unfixed:        UnfixedCount,
		SeveritySource: SourceVendor,
		PullScan:       PullScanAfter,
		Running:        RunningReport,
		DB:             DBPolicy{MaxAge: DefaultMaxAge},
		AllowBuild:     true,
		Undiagnosed:    DecideDeny,
		NoPackages:     DecideAllow,
	}
}

//go:embed default_policy.yaml
var defaultPolicyYAML []byte

// DefaultYAML returns the default policy as commented YAML, ready for an
// admin to edit. Parsing it yields Default().
func DefaultYAML() []byte { return append([]byte(nil), defaultPolicyYAML...) }

// Gated reports whether the gate for a is switched on.
func (p *Policy) Gated(a Action) bool {
	for _, x := range p.Actions {
		if x == a {
			return true
		}
	}
	return false
}

// For returns the threshold and weights that apply to an image with the
// given references, after overrides.
func (p *Policy) For(refs []string) (Points, Weights) {
	for _, o := range p.Overrides {
		if !matchAny(o.Images, refs) {
			continue
		}
		th, w := p.Threshold, p.Weights
		if o.Threshold != nil {
			th = *o.Threshold
		}
		for s, v := range o.Weights {
			w[s] = v
		}
		return th, w
	}
	return p.Threshold, p.Weights
}

// Digest is the sha256 of the normalized policy: two files that differ only
// in comments, order or spelled-out defaults have the same digest. Verdict
// caches key on it.
func (p *Policy) Digest() string {
	b, err := json.Marshal(p.Normalized())
	if err != nil {
		// Normalized holds only strings, numbers and slices of them.
		panic("scoring: marshal normalized policy: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Expired lists the whitelist entries that no longer approve anything.
func (p *Policy) Expired(now time.Time) []Entry {
	var out []Entry
	for _, e := range p.Whitelist {
		if e.expired(now) {
			out = append(out, e)
		}
	}
	return out
}

// NextLapse is when the next whitelist entry in force lapses, after now;
// zero when none will. An evaluation made now holds until then: a cached
// verdict must not outlive the approvals it counted.
func (p *Policy) NextLapse(now time.Time) time.Time {
	var next time.Time
	for _, e := range p.Whitelist {
		if e.Expires.IsZero() || e.expired(now) {
			continue
		}
		if at := e.Expires.AddDate(0, 0, 1); next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return next
}

func (e Entry) expired(now time.Time) bool {
	// The entry is good through its expiry day, in UTC.
	return !e.Expires.IsZero() && !now.UTC().Before(e.Expires.AddDate(0, 0, 1))
}
