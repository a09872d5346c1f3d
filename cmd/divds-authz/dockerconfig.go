package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) dockerConfigCmd() *cobra.Command {
	var (
		file, plugin, socket string
		noCheck              bool
	)
	cmd := &cobra.Command{
		Use:   "docker-config enable|disable",
		Short: "Add or remove the plugin in dockerd's daemon.json, keeping every other key",
		Long: `Add "authorization-plugins": ["divds"] to dockerd's daemon.json (enable) or
remove it (disable), keeping every other key. Enabling is refused while the
plugin does not answer on its socket: dockerd would then fail every call.
Restart dockerd afterwards (make install does, in the safe order).`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"enable", "disable"},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "enable":
				if !noCheck {
					if err := pluginAnswers(cmd.Context(), socket); err != nil {
						return fmt.Errorf("refusing to enable: the plugin does not answer on %s (%v); start it first (systemctl start divds-authz.socket divds-authz.service)", socket, err)
					}
				}
				changed, err := editDaemonJSON(file, func(list []string) []string {
					if slices.Contains(list, plugin) {
						return list
					}
					return append(list, plugin)
				})
				if err != nil {
					return err
				}
				reportChange(a, changed, file, "enabled "+plugin)
			case "disable":
				changed, err := editDaemonJSON(file, func(list []string) []string {
					return slices.DeleteFunc(list, func(s string) bool { return s == plugin })
				})
				if err != nil {
					return err
				}
				reportChange(a, changed, file, "disabled "+plugin)
			default:
				return fmt.Errorf("want enable or disable, got %q", args[0])
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "daemon-json", "/etc/docker/daemon.json", "dockerd's configuration file")
	cmd.Flags().StringVar(&plugin, "plugin", "divds", "the plugin name dockerd uses")
	cmd.Flags().StringVar(&socket, "socket", "/run/docker/plugins/divds.sock", "the plugin socket that must answer before enabling")
	cmd.Flags().BoolVar(&noCheck, "no-check", false, "enable without checking that the plugin answers (staging a root filesystem)")
	return cmd
}

func reportChange(a *app, changed bool, file, what string) {
	if changed {
		fmt.Fprintf(a.stdout, "%s in %s; restart dockerd to apply\n", what, file)
	} else {
		fmt.Fprintf(a.stdout, "%s: nothing to change\n", file)
	}
}

// pluginAnswers performs the plugin handshake dockerd does.
func pluginAnswers(ctx context.Context, socket string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://plugin/Plugin.Activate", bytes.NewReader([]byte("{}")))
	res, err := socketClient(socket).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	var m struct{ Implements []string }
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil || !slices.Contains(m.Implements, "authz") {
		return errors.New("the socket answers, but not as an authorization plugin")
	}
	return nil
}

// socketClient is an HTTP client of the plugin's unix socket.
func socketClient(socket string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
}

// editDaemonJSON rewrites the authorization-plugins list of daemon.json,
// keeping every other key, atomically and with the file's mode. A file
// that is not valid JSON is left alone.
func editDaemonJSON(path string, edit func([]string) []string) (bool, error) {
	cfg := map[string]json.RawMessage{}
	mode := fs.FileMode(0o644)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if st, err := os.Stat(path); err == nil {
			mode = st.Mode().Perm()
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			if err := json.Unmarshal(raw, &cfg); err != nil {
				return false, fmt.Errorf("%s is not valid JSON (%v); fix it first, nothing was changed", path, err)
			}
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return false, err
	}
	var list []string
	if r, ok := cfg["authorization-plugins"]; ok {
		if err := json.Unmarshal(r, &list); err != nil {
			return false, fmt.Errorf("%s: authorization-plugins is not a list of names: %v", path, err)
		}
	}
	next := edit(slices.Clone(list))
	if slices.Equal(next, list) {
		return false, nil
	}
	if len(next) == 0 {
		delete(cfg, "authorization-plugins")
	} else {
		b, _ := json.Marshal(next)
		cfg["authorization-plugins"] = b
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return false, err
	}
	out = append(out, '\n')
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".divds-tmp"
	if err := os.WriteFile(tmp, out, mode); err != nil {
		return false, err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return false, err
	}
	return true, nil
}
