package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/divds/divds/scoring"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check or print the admin's policy",
	}
	check := &cobra.Command{
		Use:   "check [FILE]",
		Short: "Validate a policy file and print the effective policy with its defaults",
		Long: `Validate a policy file (default: --policy) and print the effective policy,
every default spelled out. Exits 1 and names the line and field of every
problem if the file is invalid. Run it before reloading the plugin.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := a.policyPath
			if len(args) == 1 {
				path = args[0]
			}
			p, err := readPolicy(path)
			if err != nil {
				return err
			}
			out, err := p.YAML()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "# %s is valid; effective policy, digest %s\n", path, p.Digest())
			if _, err := a.stdout.Write(out); err != nil {
				return err
			}
			for _, e := range p.Expired(time.Now()) {
				a.log.Warnf("%s:%d: whitelist entry %s expired on %s and approves nothing", path, e.Line, e.ID, e.Expires.Format(time.DateOnly))
			}
			return nil
		},
	}
	def := &cobra.Command{
		Use:   "default",
		Short: "Print the default policy as commented YAML, ready to edit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := a.stdout.Write(scoring.DefaultYAML())
			return err
		},
	}
	cmd.AddCommand(check, def)
	return cmd
}

// readPolicy loads and parses a policy file, bounded in size.
func readPolicy(path string) (*scoring.Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, scoring.MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return scoring.Parse(path, data)
}

// loadPolicy is for commands that can run without a policy file: the
// default path may be missing (the built-in defaults apply, with a
// notice), but a path the user named must exist.
func (a *app) loadPolicy() (*scoring.Policy, error) {
	p, err := readPolicy(a.policyPath)
	if errors.Is(err, fs.ErrNotExist) && !a.root.PersistentFlags().Changed("policy") {
		a.log.Debugf("no policy at %s: using the built-in defaults (divds-authz policy default prints them)", a.policyPath)
		return scoring.Default(), nil
	}
	return p, err
}
