package main

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"

	"github.com/divds/divds/scanner/bundle"
	"github.com/divds/divds/scanner/mirror"
	"github.com/divds/divds/scanner/sample"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
)

func (a *app) dbCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Manage the vulnerability database (update, import, export, status)",
		Long: `The vulnerability database lives in the state directory (` + "`--state-dir`" + `).
Updates build a new database beside the live one and swap it in, so the
running plugin never sees a half-written database.`,
	}
	cmd.AddCommand(a.dbUpdateCmd(), a.dbImportCmd(), a.dbExportCmd(), a.dbStatusCmd())
	return cmd
}

func (a *app) dbUpdateCmd() *cobra.Command {
	var (
		sets       []string
		mirrorDir  string
		useSample  bool
		format     string
		noFallback bool
	)
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Fetch vulnerability data from the distributions' trackers",
		Long: `Run claircore's updater sets (default: ` + strings.Join(updater.DefaultSets, ", ") + `)
against their upstream URLs, or against an offline mirror with --mirror DIR
(laid out as DIR/<host>/<path>). An updater that fails keeps its previous
data; the summary lists it. Exits 1 only when every updater failed or the
database cannot be written.

When every updater fails and no database exists yet (a first start with
no network), the shipped sample database is installed instead, labelled
as sample data, unless --no-sample-fallback is given. --sample installs it
on purpose.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			if useSample {
				meta, _, err := sample.Build(ctx, a.stateDir)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "installed the SAMPLE database (revision %d) at %s: demo data, not a real diagnosis\n", meta.Revision, vulnstore.Path(a.stateDir))
				return nil
			}
			opts := updater.Options{Sets: sets}
			for _, s := range sets {
				if !contains(updater.DefaultSets, s) {
					return fmt.Errorf("--updaters: unknown set %q (want some of %s)", s, strings.Join(updater.DefaultSets, ", "))
				}
			}
			if mirrorDir != "" {
				root := os.DirFS(mirrorDir)
				if err := mirror.Check(root, mirrorDir); err != nil {
					return err
				}
				opts.Client = mirror.New(root).Client()
			}
			prog := newProgress(a.stdout, a.log, isTerminal(a.stdout) && format == "table")
			opts.Events = prog.event
			res, err := a.runUpdate(ctx, opts, noFallback, prog.close)
			if res.Summary.Results != nil {
				a.printUpdateSummary(res.Summary, format)
			}
			switch {
			case res.Sample:
				fmt.Fprintf(a.stdout, "every updater failed and there was no database: installed the SAMPLE database (revision %d): demo data, not a real diagnosis; run `divds-authz db update` again when the network is back\n", res.Meta.Revision)
				return err
			case errors.Is(err, errAllFailed):
				return fmt.Errorf("%w; the previous database is unchanged", err)
			case err != nil:
				return err
			}
			if format == "table" {
				fmt.Fprintf(a.stdout, "database revision %d at %s\n", res.Meta.Revision, vulnstore.Path(a.stateDir))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&sets, "updaters", nil, "updater sets to run (default: all of "+strings.Join(updater.DefaultSets, ",")+")")
	cmd.Flags().StringVar(&mirrorDir, "mirror", "", "answer every request from DIR/<host>/<path> instead of the network (air-gapped sites)")
	cmd.Flags().BoolVar(&useSample, "sample", false, "install the shipped sample database (demo data)")
	cmd.Flags().BoolVar(&noFallback, "no-sample-fallback", false, "never install the sample database when every updater fails")
	cmd.Flags().StringVar(&format, "format", "table", "summary format: table or json")
	return cmd
}

// errAllFailed is an update in which no updater succeeded.
var errAllFailed = errors.New("every updater failed")

// updateResult is the outcome of runUpdate.
type updateResult struct {
	Summary updater.Summary
	Meta    vulnstore.Meta
	// Sample is set when the shipped sample was installed instead.
	Sample bool
}

// runUpdate runs one database update and swaps the result in. When every
// updater fails and there is no database yet (a first start with no
// network), it installs the shipped sample instead, unless noSample, so
// that the gates have data; the sample is labelled as such. done, if
// set, is called when the updaters have finished.
func (a *app) runUpdate(ctx context.Context, opts updater.Options, noSample bool, done func()) (updateResult, error) {
	var res updateResult
	finish := sync.OnceFunc(func() {
		if done != nil {
			done()
		}
	})
	defer finish()
	_, statErr := os.Stat(vulnstore.Path(a.stateDir))
	b, err := vulnstore.Begin(ctx, a.stateDir, vulnstore.BuildOptions{})
	if err != nil {
		return res, err
	}
	defer b.Abort()
	res.Summary, err = updater.Run(ctx, b, opts)
	finish()
	if err != nil {
		return res, err
	}
	if !res.Summary.AllFailed() {
		res.Meta, err = b.Commit(ctx)
		return res, err
	}
	b.Abort() // releases the lock the sample build takes
	if noSample || !errors.Is(statErr, os.ErrNotExist) {
		return res, errAllFailed
	}
	a.log.Warn("every updater failed and there is no database yet: installing the shipped SAMPLE database")
	res.Meta, _, err = sample.Build(ctx, a.stateDir)
	if err != nil {
		return res, err
	}
	res.Sample = true
	return res, errAllFailed
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (a *app) printUpdateSummary(sum updater.Summary, format string) {
	if format == "json" {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(sum.Results)
		return
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SET\tUPDATER\tSTATUS\tRECORDS\tTIME\tERROR")
	for _, r := range sum.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Set, dash(r.Updater), r.Status, r.Records, r.Duration.Round(time.Millisecond), oneLine(r.Error))
	}
	tw.Flush()
	fmt.Fprintf(a.stdout, "%d updaters, %d failed\n", len(sum.Results), sum.Failed())
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line, and short.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

func (a *app) dbImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE",
		Short: "Import a Clair air-gap bundle (clairctl export-updaters; plain, gzip or zstd)",
		Long: `Import a bundle as ` + "`clairctl export-updaters`" + ` writes it (JSON lines;
plain, gzip or zstd, told apart by their magic bytes). The updaters in the
bundle replace their data; every other updater keeps its own. A truncated,
corrupted or wrong-format bundle is refused and the database is untouched.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open bundle: %w", err)
			}
			defer f.Close()
			b, err := vulnstore.Begin(ctx, a.stateDir, vulnstore.BuildOptions{})
			if err != nil {
				return err
			}
			defer b.Abort()
			start := time.Now()
			sum, err := bundle.Import(ctx, b, f, bundle.Options{Progress: func(n int) {
				a.log.Debugf("imported %d records", n)
			}})
			if err != nil {
				return fmt.Errorf("import %s: %w (the database is unchanged)", args[0], err)
			}
			meta, err := b.Commit(ctx)
			if err != nil {
				return err
			}
			el := time.Since(start)
			fmt.Fprintf(a.stdout, "imported %d records of %d updaters from %s in %s (%.0f records/s); database revision %d\n",
				sum.Records, len(sum.Updaters), args[0], el.Round(time.Millisecond), float64(sum.Records)/el.Seconds(), meta.Revision)
			return nil
		},
	}
}

func (a *app) dbExportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "export FILE",
		Short: "Export the database as a Clair bundle (.zst, .gz or plain by FILE's extension)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := vulnstore.Open(vulnstore.Path(a.stateDir))
			if err != nil {
				return err
			}
			defer s.Close()
			return writeAtomically(args[0], func(w io.Writer) error {
				var (
					out   io.Writer = w
					close func() error
				)
				switch filepath.Ext(args[0]) {
				case ".zst", ".zstd":
					zw, err := zstd.NewWriter(w)
					if err != nil {
						return err
					}
					out, close = zw, zw.Close
				case ".gz":
					gw := gzip.NewWriter(w)
					out, close = gw, gw.Close
				}
				sum, err := bundle.Export(cmd.Context(), s, out)
				if err != nil {
					return err
				}
				if close != nil {
					if err := close(); err != nil {
						return err
					}
				}
				fmt.Fprintf(a.stdout, "exported %d records of %d updaters to %s\n", sum.Records, len(sum.Updaters), args[0])
				return nil
			})
		},
	}
}

// writeAtomically writes path through a temporary file, so an interrupted
// export never leaves a truncated bundle under the final name.
func writeAtomically(path string, fn func(io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := fn(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// dbStatus is `db status --format json`.
type dbStatus struct {
	Path          string                  `json:"path"`
	SchemaVersion int                     `json:"schema_version"`
	Revision      uint64                  `json:"revision"`
	SizeBytes     int64                   `json:"size_bytes"`
	UpdatedAt     time.Time               `json:"updated_at"`
	Sample        bool                    `json:"sample"`
	OldestUpdate  time.Time               `json:"oldest_update"`
	MaxAge        string                  `json:"max_age"`
	Stale         bool                    `json:"stale"`
	Updaters      []vulnstore.UpdaterInfo `json:"updaters"`
}

func (a *app) dbStatusCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the database: revision, size, and each updater's records, fingerprint and age",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			pol, err := a.loadPolicy()
			if err != nil {
				return err
			}
			s, err := vulnstore.Open(vulnstore.Path(a.stateDir))
			if err != nil {
				return err
			}
			defer s.Close()
			us, err := s.Updaters()
			if err != nil {
				return err
			}
			oldest, err := s.OldestUpdate()
			if err != nil {
				return err
			}
			m := s.Meta()
			st := dbStatus{
				Path: s.Path(), SchemaVersion: m.Schema, Revision: m.Revision, SizeBytes: s.Size(), UpdatedAt: m.UpdatedAt,
				Sample: m.Sample, OldestUpdate: oldest, MaxAge: pol.Normalized().DB.MaxAge, Updaters: us,
				Stale: oldest.IsZero() || time.Since(oldest) > pol.DB.MaxAge,
			}
			if st.Updaters == nil {
				st.Updaters = []vulnstore.UpdaterInfo{}
			}
			if format == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			a.printStatus(st)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func (a *app) printStatus(st dbStatus) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Database:\t%s\n", st.Path)
	fmt.Fprintf(tw, "Revision:\t%d (schema %d)\n", st.Revision, st.SchemaVersion)
	fmt.Fprintf(tw, "Size:\t%.1f MB\n", float64(st.SizeBytes)/1e6)
	fmt.Fprintf(tw, "Written:\t%s\n", st.UpdatedAt.Format(time.RFC3339))
	if st.Sample {
		fmt.Fprintf(tw, "Content:\tSAMPLE DATA (shipped for demos; run `divds-authz db update`)\n")
	} else {
		fmt.Fprintf(tw, "Content:\tfrom the updaters below\n")
	}
	tw.Flush()
	fmt.Fprintln(a.stdout)
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPDATER\tKIND\tRECORDS\tLAST UPDATE\tAGE\tFINGERPRINT\tLAST ERROR")
	for _, u := range st.Updaters {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", u.Name, u.Kind, u.Records, u.UpdatedAt.Format(time.RFC3339),
			age(u.UpdatedAt), dash(oneLine(string(u.Fingerprint))), dash(oneLine(u.LastError)))
	}
	tw.Flush()
	if st.Stale {
		a.log.Warnf("the database is stale: its oldest data is from %s, older than db.max_age %s; gates treat it as an error (on_error). Run `divds-authz db update`.",
			st.OldestUpdate.Format(time.RFC3339), st.MaxAge)
	}
}

func age(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Hour:
		return d.Round(time.Minute).String()
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func mirrorClient(root fs.FS) *http.Client { return mirror.New(root).Client() }
