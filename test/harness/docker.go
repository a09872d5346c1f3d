package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// DockerOptions configure a private dockerd.
type DockerOptions struct {
	// AuthzPlugins are passed as --authorization-plugin.
	AuthzPlugins []string
	// Dir reuses a data directory (to restart a daemon); default a new one.
	Dir string
	// OwnNetwork runs dockerd in a network namespace of its own, with the
	// default bridge (legacy --link needs it) and no iptables rules: the
	// host's network is never touched. Registries on the host's loopback
	// are out of its reach then.
	OwnNetwork bool
}

// Docker is a private dockerd: its own socket, data root, exec root and
// containerd, no bridge network and no iptables changes.
type Docker struct {
	Dir    string
	Sock   string
	Host   string
	Proc   *Proc
	Client *client.Client
	// Config is a private docker CLI config directory.
	Config string
	// Engine is the engine this daemon runs (DIVDS_E2E_ENGINE).
	Engine Engine
	// Containerd is the private containerd Docker 29 runs on (nil on
	// Debian's dockerd, which manages its own under the exec root).
	Containerd *Proc
}

// StartDocker starts a private dockerd and waits until it answers.
func StartDocker(t testing.TB, opts DockerOptions) *Docker {
	t.Helper()
	eng := CurrentEngine(t)
	if eng.Bin == "" {
		Require(t, "dockerd", "docker", "containerd", "runc")
	} else {
		Require(t, "docker")
	}
	dir := opts.Dir
	if dir == "" {
		dir = TempDir(t, "divds-d-")
	}
	d := &Docker{Dir: dir, Sock: filepath.Join(dir, "docker.sock"), Config: filepath.Join(dir, "cli"), Engine: eng}
	d.Host = "unix://" + d.Sock
	os.MkdirAll(d.Config, 0o700)
	bridge := []string{"--bridge", "none"}
	if opts.OwnNetwork {
		bridge = nil
	}
	args := []string{
		"--host", d.Host, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "x"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "--iptables=false", "--ip6tables=false",
		"--ip-masq=false", "--insecure-registry", "127.0.0.0/8",
		"--containerd-namespace", "divds-e2e", "--containerd-plugins-namespace", "divds-e2e-plugins",
		"--log-level", "info",
	}
	args = append(args, bridge...)
	var env []string
	bin := "dockerd"
	if eng.Bin == "" {
		args = append(args, "--storage-driver", "overlay2")
	} else {
		// Docker 29: its own containerd, and the image store chosen in a
		// private --config-file (never /etc/docker/daemon.json).
		d.Containerd = startContainerd(t, eng, dir)
		conf := filepath.Join(dir, "daemon.json")
		WriteFile(t, conf, []byte(fmt.Sprintf(`{"features": {"containerd-snapshotter": %t}}`, eng.ContainerdStore)))
		args = append(args, "--config-file", conf, "--containerd", filepath.Join(dir, "ctd", "c.sock"))
		if !eng.ContainerdStore {
			args = append(args, "--storage-driver", "overlay2")
		}
		bin = filepath.Join(eng.Bin, "dockerd")
		env = eng.env()
	}
	for _, p := range opts.AuthzPlugins {
		args = append(args, "--authorization-plugin", p)
	}
	if opts.OwnNetwork {
		// unshare execs dockerd in place: the PID is dockerd's.
		bin, args = "unshare", append([]string{"--net", bin}, args...)
	}
	d.Proc = Start(t, "dockerd", filepath.Join(dir, "dockerd.log"), env, bin, args...)
	c, err := client.New(client.WithHost(d.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	d.Client = c
	t.Cleanup(func() { c.Close() })
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			break
		}
		if d.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("dockerd did not start: %v\n%s", err, d.Proc.Tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d
}

// Env is the environment for the docker CLI to use this daemon.
func (d *Docker) Env() []string {
	return []string{"DOCKER_HOST=" + d.Host, "DOCKER_CONFIG=" + d.Config, "DOCKER_BUILDKIT=0", "DOCKER_CLI_HINTS=false"}
}

// CLI runs the docker CLI against this daemon.
func (d *Docker) CLI(ctx context.Context, args ...string) (string, error) {
	return Run(ctx, d.Env(), "docker", args...)
}

// MustCLI runs the docker CLI and fails the test on error.
func (d *Docker) MustCLI(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := d.CLI(ctx, args...)
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return out
}

// Stop stops the daemon, then its private containerd.
func (d *Docker) Stop() {
	d.Proc.Stop()
	if d.Containerd != nil {
		d.Containerd.Stop()
	}
}

// String names the daemon in messages.
func (d *Docker) String() string { return fmt.Sprintf("dockerd at %s", d.Host) }
