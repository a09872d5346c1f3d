package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/divds/divds/report"
	"github.com/divds/divds/scoring"
)

// outputFlags are the output options of the commands that print a verdict.
type outputFlags struct {
	format string
	quiet  bool
}

func (o *outputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&o.format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print only the verdict line (table format)")
}

func (o *outputFlags) validate() error {
	if o.format != "table" && o.format != "json" {
		return fmt.Errorf("--format %q: want table or json", o.format)
	}
	return nil
}

func (a *app) evaluateCmd() *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "evaluate REPORT.json",
		Short: "Re-score a saved scan report under a policy, without rescanning",
		Long: `Re-score a saved scan report (scan --format json) under the policy given by
--policy: the admin's what-if before changing the policy.
Exit codes: 0 allowed, 2 denied by policy, 1 error.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			pol, err := a.loadPolicy()
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open report: %w", err)
			}
			defer f.Close()
			rep, err := report.Read(f)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			res := rep.Evaluate(pol, time.Now())
			return a.printVerdict(rep, res, out)
		},
	}
	out.register(cmd)
	return cmd
}

// printVerdict writes the report as asked and turns a deny into exit 2.
func (a *app) printVerdict(rep *report.Report, res scoring.Result, out outputFlags) error {
	var err error
	if out.format == "json" {
		err = rep.Write(a.stdout)
	} else {
		err = rep.WriteTable(a.stdout, res, report.TableOptions{Color: isTerminal(a.stdout), Quiet: out.quiet})
	}
	if err != nil {
		return err
	}
	if res.Verdict == scoring.Deny {
		return errDenied
	}
	return nil
}
