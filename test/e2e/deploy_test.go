package e2e

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/test/harness"
)

// repoRoot is the module root, where the Makefile is.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func make_(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", append([]string{"-C", repoRoot(t)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// snapshot lists every path under dir with its mode and content digest.
func snapshot(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v", rel, info.Mode())
		if info.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			line += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		out = append(out, line)
		return nil
	})
	sort.Strings(out)
	return out
}

func TestInstallRoundTrip(t *testing.T) {
	dest := t.TempDir()
	env := []string{"DESTDIR=" + dest, "INSTALL_DB=sample"}
	make_(t, env, "install")
	first := snapshot(t, dest)
	for _, want := range []string{"usr/local/bin/divds-authz", "etc/systemd/system/divds-authz.socket", "etc/systemd/system/divds-authz.service",
		"etc/systemd/system/docker.service.d/divds.conf", "etc/divds/policy.yaml", "var/lib/divds/vuln.db", "usr/local/share/doc/divds/admin-guide.md"} {
		if _, err := os.Stat(filepath.Join(dest, want)); err != nil {
			t.Errorf("install did not stage %s", want)
		}
	}
	make_(t, env, "install")
	if second := snapshot(t, dest); strings.Join(second, "\n") != strings.Join(first, "\n") {
		t.Fatalf("a second install changed the tree:\n%v\nvs\n%v", second, first)
	}
	// An edited policy survives a reinstall.
	policy := filepath.Join(dest, "etc/divds/policy.yaml")
	os.WriteFile(policy, []byte("threshold: 50\n"), 0o644)
	make_(t, env, "install")
	if b, _ := os.ReadFile(policy); string(b) != "threshold: 50\n" {
		t.Fatal("install overwrote an existing policy")
	}
	os.Remove(policy)
	make_(t, env, "install")
	make_(t, env, "uninstall")
	if left := snapshot(t, dest); len(left) > 0 {
		t.Fatalf("uninstall left %v", left)
	}
	make_(t, env, "uninstall") // idempotent
}

func TestSystemdUnitsVerify(t *testing.T) {
	harness.Require(t, "systemd-analyze")
	root := t.TempDir()
	make_(t, []string{"DESTDIR=" + root, "INSTALL_DB=sample"}, "install")
	// verify --root needs the system's own units and the programs the
	// units name inside that root.
	if out, err := exec.Command("cp", "-a", "/lib/systemd/system", filepath.Join(root, "lib", "systemd")+"/").CombinedOutput(); err != nil {
		os.MkdirAll(filepath.Join(root, "lib", "systemd"), 0o755)
		if out, err = exec.Command("cp", "-a", "/lib/systemd/system", filepath.Join(root, "lib", "systemd")+"/").CombinedOutput(); err != nil {
			t.Fatalf("copy system units: %v %s", err, out)
		}
	}
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	exec.Command("cp", "/bin/kill", filepath.Join(root, "bin", "kill")).Run()
	harness.WriteFile(t, filepath.Join(root, "usr/sbin/dockerd"), []byte("#!/bin/sh\n"))
	os.Chmod(filepath.Join(root, "usr/sbin/dockerd"), 0o755)
	out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "divds-authz.socket", "divds-authz.service", "docker.service").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestManagedPlugin runs DIVDS as a managed plugin of a private dockerd:
// created, enabled, made the daemon's authorization plugin; a vulnerable
// push is denied through it, and it cannot be disabled through the API.
func TestManagedPlugin(t *testing.T) {
	rs := harness.StartRsyslog(t)
	reg := harness.StartRegistry(t)
	d := harness.StartDocker(t, harness.DockerOptions{})
	pdir := filepath.Join(harness.TempDir(t, "divds-mp-"), "plugin")
	make_(t, nil, "plugin-rootfs", "PLUGIN_DIR="+pdir)
	d.MustCLI(t, "plugin", "create", "divds:latest", pdir)
	state := stateWith(t, "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	etc := t.TempDir()
	harness.WriteFile(t, filepath.Join(etc, "policy.yaml"), []byte("threshold: 200\n"))
	d.MustCLI(t, "plugin", "set", "divds:latest",
		"docker-data.source="+filepath.Join(d.Dir, "data"), "policy.source="+etc, "state.source="+state,
		"docker-socket.source="+d.Sock, "syslog.source="+rs.Sock)
	d.MustCLI(t, "plugin", "enable", "divds:latest")
	d.Stop()
	d = harness.StartDocker(t, harness.DockerOptions{Dir: d.Dir, AuthzPlugins: []string{"divds:latest"}})

	tarPath := filepath.Join(t.TempDir(), "bionic.tar")
	tarDir(t, testdata.Path(t, "rootfs", "ubuntu-18.04-bionic"), tarPath)
	d.MustCLI(t, "import", tarPath, reg.Addr+"/bionic:vuln")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := d.CLI(ctx, "push", reg.Addr+"/bionic:vuln")
	mustFail(t, "push through the managed plugin", out, err, "image score "+bionicScore+" > threshold 200.00")
	out, err = d.CLI(ctx, "plugin", "disable", "divds:latest")
	mustFail(t, "docker plugin disable", out, err)
	if !strings.Contains(out, "refused") && !strings.Contains(out, "in use") {
		t.Fatalf("disable refused for another reason:\n%s", out)
	}
	out, err = d.CLI(ctx, "plugin", "disable", "--force", "divds:latest")
	mustFail(t, "docker plugin disable --force", out, err, "refused")
	// The daemon also takes the plugin's ID, or a prefix of it.
	id := strings.TrimSpace(d.MustCLI(t, "plugin", "inspect", "-f", "{{.Id}}", "divds:latest"))
	out, err = d.CLI(ctx, "plugin", "disable", "--force", id[:12])
	mustFail(t, "docker plugin disable by ID prefix", out, err, "refused")
	harness.WaitFor(t, "the managed plugin's audit record", 20*time.Second, func() bool {
		for _, l := range rs.Lines() {
			if strings.Contains(l, `"action":"push"`) && strings.Contains(l, `"decision":"deny"`) {
				return true
			}
		}
		return false
	})
}
