// Command divds-authz is the DIVDS Docker authorization plugin and its
// command-line tools. main only wires signals and exit codes; each
// subcommand lives in its own file and calls into the library packages.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
