package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/divds/divds/scoring"
)

// TableOptions shape the human-readable report.
type TableOptions struct {
	// Color adds ANSI colours; set it only when writing to a terminal.
	Color bool
	// Quiet prints the verdict line alone.
	Quiet bool
}

const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// WriteTable prints the report in the spirit of the design's Figure 5 (the
// image and its findings) and Figure 8 (the verdict). res is the
// evaluation of the report's findings.
func (r *Report) WriteTable(w io.Writer, res scoring.Result, opt TableOptions) error {
	paint := func(code, s string) string {
		if !opt.Color {
			return s
		}
		return code + s + ansiReset
	}
	var b strings.Builder
	if !opt.Quiet {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "Image:\t%s\n", r.Image.Name())
		if r.Image.ID != "" {
			fmt.Fprintf(tw, "Image ID:\t%s\n", r.Image.ID)
		}
		if r.Image.Distribution != "" {
			fmt.Fprintf(tw, "Distribution:\t%s\n", r.Image.Distribution)
		}
		fmt.Fprintf(tw, "Layers:\t%d\n", len(r.Image.Layers))
		fmt.Fprintf(tw, "Packages:\t%d\n", len(r.Packages))
		if c := r.Coverage; c != nil {
			line := c.Status
			if c.Reason != "" {
				line += ": " + c.Reason
			}
			fmt.Fprintf(tw, "Coverage:\t%s\n", line)
			if c.UnknownSeverity > 0 {
				fmt.Fprintf(tw, "Unknown severity:\t%d findings weigh the unknown weight (%s)\n", c.UnknownSeverity, res.UnknownWeight)
			}
		}
		fmt.Fprintf(tw, "Database:\t%s\n", r.Database.describe())
		fmt.Fprintf(tw, "Vulnerabilities:\t%d total, %d unapproved, %d approved\n",
			len(res.Findings), res.Counts.UnapprovedTotal(), res.Counts.ApprovedTotal())
		tw.Flush()
		if r.Database.Sample {
			b.WriteString(paint(ansiYellow, "WARNING: sample database: these findings are for demonstration only.") + "\n")
		}
		if len(res.Findings) > 0 {
			b.WriteString("\n")
			tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tPACKAGE\tVERSION\tFIXED IN\tSTATUS\tLAYER")
			for _, f := range res.Findings {
				status := "Unapproved"
				switch {
				case f.Approved:
					status = "Approved"
				case f.Ignored != "":
					status = "Ignored (" + f.Ignored + ")"
				}
				fixed := f.FixedIn
				if fixed == "" {
					fixed = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Counted, f.Package, f.Version, fixed, status, r.layerLabel(f.Layer))
			}
			tw.Flush()
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "%s %s\n", paint(ansiYellow, "WARNING:"), w)
		}
		for _, e := range res.Expired {
			fmt.Fprintf(&b, "%s whitelist entry %s (line %d) expired on %s and approves nothing\n",
				paint(ansiYellow, "EXPIRED:"), e.ID, e.Line, e.Expires.Format("2006-01-02"))
		}
		b.WriteString("\n")
	}
	verdict := strings.ToUpper(string(res.Verdict))
	if res.Verdict == scoring.Deny {
		verdict = paint(ansiBold+ansiRed, verdict)
	} else {
		verdict = paint(ansiGreen, verdict)
	}
	note := ""
	if res.Mode == scoring.ModeAudit && (res.Exceeded || res.Refused) {
		note = " (audit mode: would be denied under enforce)"
	}
	fmt.Fprintf(&b, "Verdict: %s: %s%s\n", verdict, res.Summary(), note)
	_, err := io.WriteString(w, b.String())
	return err
}

// layerLabel names a layer by its position and short digest.
func (r *Report) layerLabel(diffID string) string {
	if diffID == "" {
		return "-"
	}
	short := diffID
	if _, hex, ok := strings.Cut(diffID, ":"); ok && len(hex) > 12 {
		short = hex[:12]
	}
	for i, l := range r.Image.Layers {
		if l.DiffID == diffID || l.Digest == diffID {
			return fmt.Sprintf("#%d %s", i+1, short)
		}
	}
	return short
}

func (d Database) describe() string {
	s := fmt.Sprintf("revision %d", d.Revision)
	if d.UpdatedAt != nil {
		s += ", updated " + d.UpdatedAt.UTC().Format("2006-01-02 15:04 MST")
	}
	if d.Sample {
		s += " (SAMPLE DATA)"
	}
	return s
}
