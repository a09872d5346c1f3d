package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var pluginSeq atomic.Int64

// PluginOptions configure a divds-authz serve process.
type PluginOptions struct {
	Bin        string // the divds-authz binary
	StateDir   string // default: a new directory
	Policy     string // policy file path (need not exist)
	DockerHost string
	Syslog     string // e.g. unixgram:///path/log.sock
	Args       []string
}

// Plugin is a running divds-authz serve, registered with a spec file of
// a unique name in /etc/docker/plugins (removed when the test ends).
type Plugin struct {
	Name        string
	Sock        string
	Spec        string
	StateDir    string
	MetricsAddr string
	Proc        *Proc
	opts        PluginOptions
	t           testing.TB
}

// StartPlugin starts the plugin and waits for its socket.
func StartPlugin(t testing.TB, opts PluginOptions) *Plugin {
	t.Helper()
	dir := TempDir(t, "divds-p-")
	if opts.StateDir == "" {
		opts.StateDir = filepath.Join(dir, "state")
	}
	p := &Plugin{
		Name:        fmt.Sprintf("divds-e2e-%d-%d", os.Getpid(), pluginSeq.Add(1)),
		Sock:        filepath.Join(dir, "divds.sock"),
		StateDir:    opts.StateDir,
		MetricsAddr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
		opts:        opts,
		t:           t,
	}
	p.Spec = filepath.Join("/etc/docker/plugins", p.Name+".spec")
	_, err := os.Stat(filepath.Dir(p.Spec))
	madeDir := os.IsNotExist(err)
	WriteFile(t, p.Spec, []byte("unix://"+p.Sock+"\n"))
	t.Cleanup(func() {
		os.Remove(p.Spec)
		if madeDir {
			os.Remove(filepath.Dir(p.Spec)) // only if empty: another test may use it
		}
	})
	p.start(filepath.Join(dir, "plugin.log"))
	return p
}

func (p *Plugin) start(logPath string) {
	t := p.t
	t.Helper()
	args := []string{"--state-dir", p.opts.StateDir, "--policy", p.opts.Policy, "--log-level", "debug", "serve",
		"--socket", p.Sock, "--no-update", "--metrics-addr", p.MetricsAddr, "--plugin-name", p.Name}
	if p.opts.DockerHost != "" {
		args = append(args, "--docker-host", p.opts.DockerHost)
	}
	if p.opts.Syslog != "" {
		args = append(args, "--syslog", p.opts.Syslog)
	}
	args = append(args, p.opts.Args...)
	p.Proc = Start(t, "divds-authz", logPath, nil, p.opts.Bin, args...)
	WaitFor(t, "the plugin's socket", 30*time.Second, func() bool {
		if p.Proc.Exited() {
			t.Fatalf("divds-authz serve exited:\n%s", p.Proc.Tail())
		}
		res, err := unixHTTP(p.Sock).Post("http://plugin/Plugin.Activate", "application/json", strings.NewReader("{}"))
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

// Restart stops and starts the plugin with the same options.
func (p *Plugin) Restart() {
	p.Proc.Stop()
	p.start(p.Proc.Log + ".2")
}

// Metric reads one sample of the plugin's /metrics (0 when absent).
func (p *Plugin) Metric(name string) float64 {
	res, err := httpGet("http://" + p.MetricsAddr + "/metrics")
	if err != nil {
		return 0
	}
	var sum float64
	for _, l := range strings.Split(res, "\n") {
		if strings.HasPrefix(l, name+" ") || strings.HasPrefix(l, name+"{") || (strings.Contains(name, "{") && strings.HasPrefix(l, strings.TrimSuffix(name, "}"))) {
			var v float64
			fmt.Sscanf(l[strings.LastIndex(l, " ")+1:], "%g", &v)
			sum += v
		}
	}
	return sum
}
