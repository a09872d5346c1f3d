package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Engine is the Docker Engine the end-to-end suite runs on, chosen by
// DIVDS_E2E_ENGINE:
//
//	debian         Debian's docker.io (20.10), overlay2 (the default)
//	29-overlay2    Docker 29 (moby v2), the classic image store, overlay2
//	29-containerd  Docker 29, the containerd image store (its default on
//	               new installs), overlayfs snapshotter
//
// Docker 29's binaries come from scripts/engine.sh, which builds them once
// per machine outside the checkout; DIVDS_ENGINE_BIN names their directory.
type Engine struct {
	Name string
	// Bin holds dockerd, containerd, its shim and runc; empty for Debian's
	// packaged engine, which is on PATH.
	Bin string
	// ContainerdStore is set for the containerd image store.
	ContainerdStore bool
}

// CurrentEngine returns the engine the suite was asked to run on.
func CurrentEngine(t testing.TB) Engine {
	t.Helper()
	name := os.Getenv("DIVDS_E2E_ENGINE")
	switch name {
	case "", "debian":
		return Engine{Name: "debian"}
	case "29-overlay2", "29-containerd":
	default:
		t.Fatalf("DIVDS_E2E_ENGINE=%q: want debian, 29-overlay2 or 29-containerd", name)
	}
	bin := os.Getenv("DIVDS_ENGINE_BIN")
	if bin == "" {
		t.Fatalf("DIVDS_E2E_ENGINE=%s needs DIVDS_ENGINE_BIN, the directory scripts/engine.sh prints (make e2e sets it)", name)
	}
	for _, b := range []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("DIVDS_ENGINE_BIN=%s lacks %s: run scripts/engine.sh", bin, b)
		}
	}
	return Engine{Name: name, Bin: bin, ContainerdStore: name == "29-containerd"}
}

// Is29 reports whether this is Docker 29.
func (e Engine) Is29() bool { return e.Bin != "" }

// env puts the engine's binaries first on PATH: containerd finds its shim
// there, and the shim finds runc.
func (e Engine) env() []string {
	return []string{"PATH=" + e.Bin + ":" + os.Getenv("PATH")}
}

// startContainerd starts a private containerd for a Docker 29 daemon in
// dir/ctd: own root, state, sockets and configuration, no CRI, no NRI, and
// nothing of the host's (/run/containerd is never used).
func startContainerd(t testing.TB, e Engine, dir string) *Proc {
	t.Helper()
	c := filepath.Join(dir, "ctd")
	for _, sub := range []string{"root", "state", "opt"} {
		if err := os.MkdirAll(filepath.Join(c, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(c, "c.sock")
	conf := strings.NewReplacer("@C@", c).Replace(`version = 3
root = "@C@/root"
state = "@C@/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim", "io.containerd.nri.v1.nri"]
[grpc]
  address = "@C@/c.sock"
[ttrpc]
  address = "@C@/c.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "@C@/opt"
`)
	WriteFile(t, filepath.Join(c, "config.toml"), []byte(conf))
	os.Remove(sock)
	p := Start(t, "containerd", filepath.Join(c, "containerd.log"), e.env(), filepath.Join(e.Bin, "containerd"), "--config", filepath.Join(c, "config.toml"))
	WaitFor(t, "containerd's socket", 30*time.Second, func() bool {
		if p.Exited() {
			t.Fatalf("containerd exited:\n%s", p.Tail())
		}
		st, err := os.Stat(sock)
		return err == nil && st.Mode()&os.ModeSocket != 0
	})
	return p
}
