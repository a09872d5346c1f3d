package scoring

import (
	"fmt"
	"strings"
)

// CountsLine lists the non-zero unapproved counts, most severe first:
// "critical 3, high 12, medium 20".
func (c Counts) CountsLine() string {
	var parts []string
	for s := Critical; s >= Unknown; s-- {
		if n := c.Unapproved[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
		}
	}
	if len(parts) == 0 {
		return "no unapproved findings"
	}
	return strings.Join(parts, ", ")
}

// Top returns the heaviest unapproved finding, if any.
func (r Result) Top() (Scored, bool) {
	for _, f := range r.Findings {
		if !f.Approved && f.Ignored == "" {
			return f, true
		}
	}
	return Scored{}, false
}

// Summary is the one-line account of a result that deny messages, audit
// records and the CLI's verdict line share: "image score 297.40 >
// threshold 200.00 (critical 3, high 12; top: CVE-2019-1543 openssl
// 1.1.0f-3, fixed in 1.1.0j-1)".
func (r Result) Summary() string {
	op := "<="
	if r.Exceeded {
		op = ">"
	}
	var b strings.Builder
	b.WriteString(r.coverageLine())
	fmt.Fprintf(&b, "image score %s %s threshold %s (%s", r.Score, op, r.Threshold, r.Counts.CountsLine())
	if n := r.Counts.ApprovedTotal(); n > 0 {
		fmt.Fprintf(&b, "; %d approved", n)
	}
	if t, ok := r.Top(); ok && t.Weight > 0 {
		fmt.Fprintf(&b, "; top: %s %s %s", t.ID, t.Package, t.Version)
		if t.FixedIn != "" {
			fmt.Fprintf(&b, ", fixed in %s", t.FixedIn)
		} else {
			b.WriteString(", no fix yet")
		}
	}
	b.WriteString(")")
	return b.String()
}

// ApprovedTotal counts approved findings of every severity.
func (c Counts) ApprovedTotal() int {
	n := 0
	for _, v := range c.Approved {
		n += v
	}
	return n
}

// UnapprovedTotal counts unapproved findings of every severity.
func (c Counts) UnapprovedTotal() int {
	n := 0
	for _, v := range c.Unapproved {
		n += v
	}
	return n
}
