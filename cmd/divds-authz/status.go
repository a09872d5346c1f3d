package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/divds/divds/authz"
)

// statusPath is where serve answers `divds-authz status`, on the plugin
// socket itself: it exists whenever the plugin runs, and only root (and
// dockerd) can open it.
const statusPath = "/divds/status"

// pluginStatus is what a running plugin reports about itself.
type pluginStatus struct {
	Version      string `json:"version"`
	PolicyPath   string `json:"policy_path"`
	PolicyDigest string `json:"policy_digest"`
	Mode         string `json:"mode"`
	Threshold    string `json:"threshold"`
	Database     struct {
		Present   bool      `json:"present"`
		Revision  uint64    `json:"revision,omitempty"`
		UpdatedAt time.Time `json:"updated_at,omitzero"`
		Sample    bool      `json:"sample,omitempty"`
		// Error says why the gates cannot use it (missing, stale).
		Error string `json:"error,omitempty"`
	} `json:"database"`
	Quarantined   []authz.Quarantined `json:"quarantined"`
	RunningDenied []authz.Flagged     `json:"running_denied"`
}

// statusHandler serves the plugin's status.
func (a *app) statusHandler(p *authz.Plugin, v *authz.Verdicts, db *dbState) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		pol, digest := p.Current()
		st := pluginStatus{
			Version: version, PolicyPath: a.policyPath, PolicyDigest: digest, Mode: string(pol.Mode),
			Threshold: pol.Threshold.String(), Quarantined: v.QuarantineList(), RunningDenied: p.FlaggedContainers(),
		}
		if m, ok := db.h.Meta(); ok {
			st.Database.Present, st.Database.Revision, st.Database.UpdatedAt, st.Database.Sample = true, m.Revision, m.UpdatedAt, m.Sample
		}
		if _, err := db.Revision(pol); err != nil {
			st.Database.Error = err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	}
}

func (a *app) statusCmd() *cobra.Command {
	var socket, format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Ask the running plugin for its policy, database, quarantined images and failing running containers",
		Long: `Ask the running plugin (divds-authz serve) for its state: the policy in
force, the database it uses and whether the gates can use it, the images
quarantined after a pull, and the running containers whose image the
policy denies. For the managed plugin, pass its socket:
--socket /run/docker/plugins/<plugin ID>/divds.sock.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			st, raw, err := fetchStatus(cmd.Context(), socket)
			if err != nil {
				return err
			}
			if format == "json" {
				_, err := a.stdout.Write(raw)
				return err
			}
			a.printPluginStatus(st)
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "/run/docker/plugins/divds.sock", "the plugin's unix socket")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

func fetchStatus(ctx context.Context, socket string) (pluginStatus, []byte, error) {
	var st pluginStatus
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://plugin"+statusPath, nil)
	res, err := socketClient(socket).Do(req)
	if err != nil {
		return st, nil, fmt.Errorf("the plugin does not answer on %s: %w (is `divds-authz serve` running? the managed plugin's socket is /run/docker/plugins/<plugin ID>/divds.sock)", socket, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return st, nil, fmt.Errorf("read the status from %s: %w", socket, err)
	}
	if res.StatusCode != http.StatusOK {
		return st, nil, fmt.Errorf("%s answers %s: a divds-authz older than the status command, or another plugin", socket, res.Status)
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, nil, fmt.Errorf("the status from %s: %w", socket, err)
	}
	return st, raw, nil
}

func (a *app) printPluginStatus(st pluginStatus) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Plugin:\tdivds-authz %s\n", st.Version)
	fmt.Fprintf(tw, "Policy:\t%s (%s; mode %s, threshold %s)\n", st.PolicyPath, st.PolicyDigest, st.Mode, st.Threshold)
	db := "none"
	if st.Database.Present {
		db = fmt.Sprintf("revision %d, written %s (%s ago)", st.Database.Revision, st.Database.UpdatedAt.Format(time.RFC3339), age(st.Database.UpdatedAt))
		if st.Database.Sample {
			db += ", SAMPLE DATA"
		}
	}
	if st.Database.Error != "" {
		db += "; NOT USABLE: " + st.Database.Error
	}
	fmt.Fprintf(tw, "Database:\t%s\n", db)
	tw.Flush()

	var rows [][]string
	for _, q := range st.Quarantined {
		rows = append(rows, []string{shortID(q.ImageID), joinRefs(q.Refs), q.At.Format(time.RFC3339), q.Summary})
	}
	a.printSection("Quarantined images", "IMAGE ID\tPULLED AS\tSINCE\tWHY", rows)
	rows = nil
	for _, f := range st.RunningDenied {
		rows = append(rows, []string{f.Name, f.Image, f.At.Format(time.RFC3339), f.Summary})
	}
	a.printSection("Running containers of denied images", "CONTAINER\tIMAGE\tFOUND\tWHY", rows)
}

// printSection prints a titled count and, when there are rows, a table.
func (a *app) printSection(title, header string, rows [][]string) {
	fmt.Fprintf(a.stdout, "\n%s: %d\n", title, len(rows))
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func shortID(id string) string {
	const n = len("sha256:") + 12
	if len(id) > n {
		return id[:n]
	}
	return id
}

func joinRefs(refs []string) string { return dash(strings.Join(refs, ", ")) }
