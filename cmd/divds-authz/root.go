package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/divds/divds/internal/logging"
)

// Exit codes shared by every command that gives a verdict.
const (
	exitAllow  = 0
	exitError  = 1
	exitDenied = 2
)

// errDenied makes a command exit 2 after it has printed its verdict.
var errDenied = errors.New("denied by policy")

// Defaults of the global flags.
const (
	defaultPolicyPath = "/etc/divds/policy.yaml"
	defaultStateDir   = "/var/lib/divds"
)

// app holds what the global flags set, shared by the subcommands.
type app struct {
	policyPath string
	stateDir   string
	logLevel   string
	log        *logrus.Logger
	stdout     io.Writer
	stderr     io.Writer
	root       *cobra.Command
	def        defaults
}

// defaults are the values of the global flags when none is given; tests
// point them at temporary paths so the host's /etc/divds never matters.
type defaults struct {
	policyPath string
	stateDir   string
}

func execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return executeWith(ctx, defaults{defaultPolicyPath, defaultStateDir}, args, stdout, stderr)
}

func executeWith(ctx context.Context, def defaults, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr, log: logrus.New(), def: def}
	a.log.SetOutput(stderr)
	root := a.newRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case err == nil:
		return exitAllow
	case errors.Is(err, errDenied):
		return exitDenied
	default:
		fmt.Fprintf(stderr, "divds-authz: %v\n", err)
		return exitError
	}
}

func (a *app) newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "divds-authz",
		Short: "DIVDS: Docker image vulnerability diagnostics and an authorization plugin that enforces them",
		Long: `divds-authz diagnoses Docker images for known vulnerable OS packages (IVD),
scores them under the admin's policy (IVE), and, as a Docker authorization
plugin, denies pulls, pushes and runs of images that score over the threshold.

Exit codes: 0 allowed, 2 denied by policy, 1 error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			lvl, err := logrus.ParseLevel(a.logLevel)
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			a.log.SetLevel(lvl)
			// claircore logs through log/slog's default logger; main owns
			// process-wide state, so the bridge is installed here.
			slog.SetDefault(slog.New(logging.NewHandler(a.log)))
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.policyPath, "policy", a.def.policyPath, "policy file")
	pf.StringVar(&a.stateDir, "state-dir", a.def.stateDir, "state directory (vulnerability database, caches)")
	pf.StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	a.root = root
	root.AddCommand(a.versionCmd(), a.policyCmd(), a.evaluateCmd(), a.dbCmd(), a.scanCmd(), a.serveCmd(), a.statusCmd(), a.dockerConfigCmd())
	return root
}

// isTerminal reports whether w is a terminal that colour may be sent to.
func isTerminal(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
