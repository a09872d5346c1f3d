package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at link time by the Makefile (-X main.version=...).
var version = "dev"

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of divds-authz and of its engine",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "divds-authz %s\n", version)
			if bi, ok := debug.ReadBuildInfo(); ok {
				fmt.Fprintf(a.stdout, "go %s\n", bi.GoVersion)
				for _, d := range bi.Deps {
					if d.Path == "github.com/quay/claircore" {
						fmt.Fprintf(a.stdout, "claircore %s\n", d.Version)
					}
				}
			}
			return nil
		},
	}
}
