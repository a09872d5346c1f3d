package scoring

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// NormalizedPolicy is the effective policy in the file's own shape, with
// every default spelled out. It is what `policy check` prints and what
// Digest hashes.
type NormalizedPolicy struct {
	Threshold        Points               `yaml:"threshold" json:"threshold"`
	Weights          NormalizedWeights    `yaml:"weights" json:"weights"`
	Mode             Mode                 `yaml:"mode" json:"mode"`
	Actions          []Action             `yaml:"actions" json:"actions"`
	OnError          OnError              `yaml:"on_error" json:"on_error"`
	Unfixed          Unfixed              `yaml:"unfixed" json:"unfixed"`
	SeveritySource   SeveritySource       `yaml:"severity_source" json:"severity_source"`
	PullScan         PullScan             `yaml:"pull_scan" json:"pull_scan"`
	Running          Running              `yaml:"running" json:"running"`
	DB               NormalizedDB         `yaml:"db" json:"db"`
	Whitelist        []NormalizedEntry    `yaml:"whitelist" json:"whitelist"`
	Overrides        []NormalizedOverride `yaml:"overrides,omitempty" json:"overrides,omitempty"`
	AllowPluginAdmin bool                 `yaml:"allow_plugin_admin" json:"allow_plugin_admin"`
	AllowBuild       bool                 `yaml:"allow_build" json:"allow_build"`
	AllowSwarmJoin   bool                 `yaml:"allow_swarm_join" json:"allow_swarm_join"`
	Undiagnosed      Decision             `yaml:"undiagnosed" json:"undiagnosed"`
	NoPackages       Decision             `yaml:"no_packages" json:"no_packages"`
}

// NormalizedWeights lists the weights in severity order.
type NormalizedWeights struct {
	Unknown    Points `yaml:"unknown" json:"unknown"`
	Negligible Points `yaml:"negligible" json:"negligible"`
	Low        Points `yaml:"low" json:"low"`
	Medium     Points `yaml:"medium" json:"medium"`
	High       Points `yaml:"high" json:"high"`
	Critical   Points `yaml:"critical" json:"critical"`
}

// NormalizedDB is the db section.
type NormalizedDB struct {
	MaxAge string `yaml:"max_age" json:"max_age"`
}

// NormalizedEntry is one whitelist entry.
type NormalizedEntry struct {
	ID      string   `yaml:"id" json:"id"`
	Package string   `yaml:"package,omitempty" json:"package,omitempty"`
	Images  []string `yaml:"images,omitempty" json:"images,omitempty"`
	Expires string   `yaml:"expires,omitempty" json:"expires,omitempty"`
	Reason  string   `yaml:"reason,omitempty" json:"reason,omitempty"`
}

// NormalizedOverride is one override, with only what it changes.
type NormalizedOverride struct {
	Images    []string          `yaml:"images" json:"images"`
	Threshold *Points           `yaml:"threshold,omitempty" json:"threshold,omitempty"`
	Weights   map[string]Points `yaml:"weights,omitempty" json:"weights,omitempty"`
}

func weightsDoc(w Weights) NormalizedWeights {
	return NormalizedWeights{w[Unknown], w[Negligible], w[Low], w[Medium], w[High], w[Critical]}
}

// Normalized returns the effective policy in its file shape.
func (p *Policy) Normalized() NormalizedPolicy {
	n := NormalizedPolicy{
		Threshold:        p.Threshold,
		Weights:          weightsDoc(p.Weights),
		Mode:             p.Mode,
		Actions:          append([]Action{}, p.Actions...),
		OnError:          p.OnError,
		Unfixed:          p.Unfixed,
		SeveritySource:   p.SeveritySource,
		PullScan:         p.PullScan,
		Running:          p.Running,
		DB:               NormalizedDB{MaxAge: FormatDuration(p.DB.MaxAge)},
		Whitelist:        []NormalizedEntry{},
		AllowPluginAdmin: p.AllowPluginAdmin,
		AllowBuild:       p.AllowBuild,
		AllowSwarmJoin:   p.AllowSwarmJoin,
		Undiagnosed:      p.Undiagnosed,
		NoPackages:       p.NoPackages,
	}
	for _, e := range p.Whitelist {
		n.Whitelist = append(n.Whitelist, NormalizeEntry(e))
	}
	for _, o := range p.Overrides {
		no := NormalizedOverride{Images: o.Images, Threshold: o.Threshold}
		if len(o.Weights) > 0 {
			no.Weights = map[string]Points{}
			for s, v := range o.Weights {
				no.Weights[s.String()] = v
			}
		}
		n.Overrides = append(n.Overrides, no)
	}
	return n
}

// NormalizeEntry returns a whitelist entry in its file shape.
func NormalizeEntry(e Entry) NormalizedEntry {
	ne := NormalizedEntry{ID: e.ID, Package: e.Package, Images: e.Images, Reason: e.Reason}
	if !e.Expires.IsZero() {
		ne.Expires = e.Expires.Format(time.DateOnly)
	}
	return ne
}

// MarshalYAML writes Points as a plain YAML float with two decimals.
func (p Points) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: p.String()}, nil
}

// YAML renders the effective policy.
func (p *Policy) YAML() ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p.Normalized()); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode policy: %w", err)
	}
	return []byte(b.String()), nil
}

// FormatDuration prints a duration in the Go syntax the policy accepts,
// without trailing zero units: 120h, 90m, 1h30m.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
