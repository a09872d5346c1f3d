package scoring

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// PolicyError is one problem in a policy file, located by line, column
// and the dotted field path, so an admin can go straight to it.
type PolicyError struct {
	File   string
	Line   int
	Column int
	Field  string
	Msg    string
}

func (e *PolicyError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column)
	}
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", loc, e.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Field, e.Msg)
}

// MaxPolicySize bounds a policy file; a larger one is certainly a mistake.
const MaxPolicySize = 4 << 20

// Parse reads a policy from YAML. Every key is checked: an unknown key, a
// value of the wrong type or out of range is an error naming the file,
// line and field. All problems are reported at once (joined), so an admin
// fixes a file in one pass. An empty document yields Default().
func Parse(file string, data []byte) (*Policy, error) {
	if len(data) > MaxPolicySize {
		return nil, &PolicyError{File: file, Msg: fmt.Sprintf("file is %d bytes, larger than the %d allowed", len(data), MaxPolicySize)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &PolicyError{File: file, Msg: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	p := &parser{file: file}
	pol := Default()
	// An empty file (or one of only comments) is refused, not read as
	// the defaults: it is what a policy cut short by a failed write or an
	// editor's truncation looks like, and taking it would silently relax
	// the admin's threshold and whitelist scopes.
	empty := &PolicyError{File: file, Msg: "the file is empty or holds only comments; to enforce the defaults, write them: divds-authz policy default > " + file}
	if len(doc.Content) == 0 {
		return nil, empty
	}
	root := resolve(doc.Content[0])
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil, empty
	}
	p.policy(root, pol)
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return pol, nil
}

type parser struct {
	file string
	errs []error
}

func (p *parser) fail(n *yaml.Node, field, format string, args ...any) {
	p.errs = append(p.errs, &PolicyError{File: p.file, Line: n.Line, Column: n.Column, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows an alias to its anchor. The schema is shallow and only
// known keys are walked, so aliases cannot make the walk explode.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return fmt.Sprintf("text %q", n.Value)
		case "!!null":
			return "nothing (null)"
		case "!!bool":
			return fmt.Sprintf("a boolean (%s)", n.Value)
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported node"
}

// fields walks a mapping, calling fn for each key in allowed and failing
// on unknown or repeated keys.
func (p *parser) fields(n *yaml.Node, path string, allowed []string, fn func(key string, v *yaml.Node, field string)) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, strings.TrimSuffix(path, "."), "must be a mapping, got %s", kindName(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		field := path + k.Value
		if k.Kind != yaml.ScalarNode {
			p.fail(k, strings.TrimSuffix(path, "."), "keys must be plain names")
			continue
		}
		if line, dup := seen[k.Value]; dup {
			p.fail(k, field, "repeated key (first set on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		if !contains(allowed, k.Value) {
			p.fail(k, field, "unknown key (want one of %s)", strings.Join(allowed, ", "))
			continue
		}
		fn(k.Value, v, field)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The keys a policy may hold, by section: the parser accepts exactly
// these, and Keys lists them for documentation checks.
var (
	topKeys       = []string{"threshold", "weights", "whitelist", "mode", "actions", "on_error", "unfixed", "severity_source", "pull_scan", "running", "db", "overrides", "allow_plugin_admin", "allow_build", "allow_swarm_join", "undiagnosed", "no_packages"}
	dbKeys        = []string{"max_age"}
	whitelistKeys = []string{"id", "package", "images", "expires", "reason"}
	overrideKeys  = []string{"images", "threshold", "weights"}
)

// Keys lists every key a policy file may hold, in dotted form:
// "weights.high", "whitelist[].id", "overrides[].weights.critical".
func Keys() []string {
	var out []string
	for _, k := range topKeys {
		switch k {
		case "weights":
			for _, s := range severityNames {
				out = append(out, "weights."+s)
			}
		case "db":
			for _, d := range dbKeys {
				out = append(out, "db."+d)
			}
		case "whitelist":
			for _, w := range whitelistKeys {
				out = append(out, "whitelist[]."+w)
			}
		case "overrides":
			for _, o := range overrideKeys {
				if o == "weights" {
					for _, s := range severityNames {
						out = append(out, "overrides[].weights."+s)
					}
					continue
				}
				out = append(out, "overrides[]."+o)
			}
		default:
			out = append(out, k)
		}
	}
	return out
}

func (p *parser) policy(n *yaml.Node, pol *Policy) {
	p.fields(n, "", topKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "threshold":
			if t, ok := p.points(v, field); ok {
				pol.Threshold = t
			}
		case "weights":
			for s, w := range p.weights(v, field) {
				pol.Weights[s] = w
			}
		case "whitelist":
			pol.Whitelist = p.whitelist(v, field)
		case "mode":
			pol.Mode = Mode(p.enum(v, field, pol.Mode, string(ModeEnforce), string(ModeAudit)))
		case "actions":
			pol.Actions = p.actions(v, field)
		case "on_error":
			pol.OnError = OnError(p.enum(v, field, pol.OnError, string(OnErrorDeny), string(OnErrorAllow)))
		case "unfixed":
			pol.Unfixed = Unfixed(p.enum(v, field, pol.Unfixed, string(UnfixedCount), string(UnfixedIgnore)))
		case "severity_source":
			pol.SeveritySource = SeveritySource(p.enum(v, field, pol.SeveritySource, string(SourceVendor), string(SourceNVD), string(SourceHighest)))
		case "pull_scan":
			pol.PullScan = PullScan(p.enum(v, field, pol.PullScan, string(PullScanAfter), string(PullScanBefore)))
		case "running":
			pol.Running = Running(p.enum(v, field, pol.Running, string(RunningReport), string(RunningStop)))
		case "db":
			p.fields(v, field+".", dbKeys, func(_ string, v *yaml.Node, field string) {
				if d, ok := p.duration(v, field); ok {
					pol.DB.MaxAge = d
				}
			})
		case "overrides":
			pol.Overrides = p.overrides(v, field)
		case "allow_plugin_admin":
			if b, ok := p.boolean(v, field); ok {
				pol.AllowPluginAdmin = b
			}
		case "undiagnosed":
			pol.Undiagnosed = Decision(p.enum(v, field, string(pol.Undiagnosed), string(DecideDeny), string(DecideAllow)))
		case "no_packages":
			pol.NoPackages = Decision(p.enum(v, field, string(pol.NoPackages), string(DecideDeny), string(DecideAllow)))
		case "allow_build":
			if b, ok := p.boolean(v, field); ok {
				pol.AllowBuild = b
			}
		case "allow_swarm_join":
			if b, ok := p.boolean(v, field); ok {
				pol.AllowSwarmJoin = b
			}
		}
	})
}

// points reads a non-negative number. Quoted numbers are refused: a
// threshold written as text is usually a template that was not filled in.
func (p *parser) points(n *yaml.Node, field string) (Points, bool) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		p.fail(n, field, "must be a number, got %s", kindName(n))
		return 0, false
	}
	v, err := ParsePoints(n.Value)
	if err != nil {
		p.fail(n, field, "%v", err)
		return 0, false
	}
	if v < 0 {
		p.fail(n, field, "must not be negative, got %s", n.Value)
		return 0, false
	}
	return v, true
}

func (p *parser) weights(n *yaml.Node, field string) map[Severity]Points {
	out := map[Severity]Points{}
	p.fields(n, field+".", severityNames[:], func(key string, v *yaml.Node, f string) {
		s, _ := ParseSeverity(key)
		if w, ok := p.points(v, f); ok {
			out[s] = w
		}
	})
	return out
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.fail(n, field, "must be true or false, got %s", kindName(n))
		return false, false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
}

func (p *parser) str(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.fail(n, field, "must be text, got %s", kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *parser) enum(n *yaml.Node, field string, def any, allowed ...string) string {
	s, ok := p.str(n, field)
	if !ok {
		return fmt.Sprint(def)
	}
	if !contains(allowed, s) {
		p.fail(n, field, "unknown value %q (want one of %s)", s, strings.Join(allowed, ", "))
		return fmt.Sprint(def)
	}
	return s
}

func (p *parser) list(n *yaml.Node, field string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		p.fail(n, field, "must be a list, got %s", kindName(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = resolve(c)
	}
	return out
}

func (p *parser) actions(n *yaml.Node, field string) []Action {
	out := []Action{}
	var names []string
	for _, a := range AllActions() {
		names = append(names, string(a))
	}
	for i, c := range p.list(n, field) {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, ok := p.str(c, f)
		if !ok {
			continue
		}
		if !contains(names, s) {
			p.fail(c, f, "unknown action %q (want one of %s)", s, strings.Join(names, ", "))
			continue
		}
		if !contains(actionStrings(out), s) {
			out = append(out, Action(s))
		}
	}
	return out
}

func actionStrings(as []Action) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = string(a)
	}
	return out
}

// duration reads a Go duration ("120h", "90m") or whole days ("5d").
func (p *parser) duration(n *yaml.Node, field string) (time.Duration, bool) {
	s, ok := p.str(n, field)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.fail(n, field, "%v", err)
		return 0, false
	}
	return d, true
}

// ParseDuration reads a positive Go duration or a whole number of days.
func ParseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 || n > 36500 {
			return 0, fmt.Errorf("bad duration %q (want e.g. 120h, 90m or 5d)", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("bad duration %q (want e.g. 120h, 90m or 5d)", s)
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

func (p *parser) imagePatterns(n *yaml.Node, field string) []string {
	var out []string
	for i, c := range p.list(n, field) {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, ok := p.str(c, f)
		if !ok {
			continue
		}
		if err := ValidatePattern(s); err != nil {
			p.fail(c, f, "%v", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) whitelist(n *yaml.Node, field string) []Entry {
	var out []Entry
	for i, c := range p.list(n, field) {
		f := fmt.Sprintf("%s[%d]", field, i)
		e := Entry{Line: c.Line}
		hasID := false
		p.fields(c, f+".", whitelistKeys, func(key string, v *yaml.Node, ff string) {
			switch key {
			case "id":
				if s, ok := p.str(v, ff); ok {
					hasID = true
					if s == "" || strings.ContainsAny(s, " \t\n") {
						p.fail(v, ff, "must be a CVE or advisory ID such as CVE-2019-1543, got %q", s)
					}
					e.ID = s
				}
			case "package":
				if s, ok := p.str(v, ff); ok {
					e.Package = s
				}
			case "images":
				e.Images = p.imagePatterns(v, ff)
			case "expires":
				if s, ok := p.str(v, ff); ok {
					t, err := time.Parse(time.DateOnly, s)
					if err != nil {
						p.fail(v, ff, "bad date %q (want YYYY-MM-DD)", s)
					}
					e.Expires = t
				}
			case "reason":
				if s, ok := p.str(v, ff); ok {
					e.Reason = s
				}
			}
		})
		if c.Kind == yaml.MappingNode && !hasID {
			p.fail(c, f+".id", "required: the CVE or advisory ID this entry approves")
		}
		out = append(out, e)
	}
	return out
}

func (p *parser) overrides(n *yaml.Node, field string) []Override {
	var out []Override
	for i, c := range p.list(n, field) {
		f := fmt.Sprintf("%s[%d]", field, i)
		o := Override{Line: c.Line}
		p.fields(c, f+".", overrideKeys, func(key string, v *yaml.Node, ff string) {
			switch key {
			case "images":
				o.Images = p.imagePatterns(v, ff)
			case "threshold":
				if t, ok := p.points(v, ff); ok {
					o.Threshold = &t
				}
			case "weights":
				o.Weights = p.weights(v, ff)
			}
		})
		if c.Kind == yaml.MappingNode && len(o.Images) == 0 {
			p.fail(c, f+".images", "required: at least one image pattern the override applies to")
		}
		out = append(out, o)
	}
	return out
}
