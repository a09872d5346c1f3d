package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/test/harness"
)

// TestDamagedDatabase: a truncated database (a copy cut short, a full
// disk) used to crash the plugin at its start (a fault in the mapped
// file), after which dockerd failed every call. It is treated like a
// missing one: the plugin serves, on_error decides, /readyz says why, and
// a good file swapped in is used.
func TestDamagedDatabase(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	g.importAlpine(t, "clean:local")
	path := vulnstore.Path(g.p.StateDir)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	g.p.Proc.Stop()
	if err := os.WriteFile(path, good[:len(good)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	g.p.Restart()
	out, err := g.cli("create", "clean:local", "/bin/true")
	mustFail(t, "create with a truncated database", out, err, "no verdict could be computed", "corrupt", "db update")
	if g.p.Proc.Exited() {
		t.Fatalf("the plugin died:\n%s", g.p.Proc.Tail())
	}
	res, err := http.Get("http://" + g.p.MetricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "corrupt") {
		t.Fatalf("/readyz: %d %s", res.StatusCode, body)
	}
	out, err = harness.Run(t.Context(), nil, bin, "--state-dir", g.p.StateDir, "db", "status")
	if err == nil || !strings.Contains(out, "corrupt") || !strings.Contains(out, "Recover") {
		t.Fatalf("db status: %v\n%s", err, out)
	}
	// A good database swapped in, as db update or db import does.
	tmp := filepath.Join(g.p.StateDir, "vuln.db.new")
	if err := os.WriteFile(tmp, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	harness.WaitFor(t, "the good database in use", 30*time.Second, func() bool {
		_, err := g.cli("create", "clean:local", "/bin/true")
		return err == nil
	})
}

// TestEmptiedPolicy: a policy file emptied (a write cut short, an editor's
// truncation) was read as the defaults on reload, relaxing θ from 150 to
// 200 in the case reported. It is refused like any invalid policy; the
// one in force stays.
func TestEmptiedPolicy(t *testing.T) {
	g := startGate(t, "threshold: 900\n")
	defer g.dumpOnFailure(t)
	g.importBionic(t, "bionic:local") // scores 866.00: allowed under θ 900 only
	g.reload(t, "threshold: 900\n")
	for i, emptied := range []string{"", "# only a comment\n"} {
		harness.WriteFile(t, g.policy, []byte(emptied))
		g.p.Proc.Signal(syscall.SIGHUP)
		harness.WaitFor(t, "the refusal", 20*time.Second, func() bool {
			return strings.Count(g.p.Proc.Tail(), "policy reload (SIGHUP) refused") > i
		})
		if !strings.Contains(g.p.Proc.Tail(), "the file is empty") {
			t.Fatalf("the refusal does not say why:\n%s", g.p.Proc.Tail())
		}
		if out, err := g.cli("create", "bionic:local", "/bin/true"); err != nil {
			t.Fatalf("the policy in force (θ 900) changed: %v\n%s", err, out)
		}
	}
	out, err := harness.Run(t.Context(), nil, bin, "policy", "check", g.policy)
	if err == nil || !strings.Contains(out, "empty") {
		t.Fatalf("policy check of an emptied file: %v\n%s", err, out)
	}
}

// TestAuditSurvivesAKill: records queued while rsyslog is down were lost
// when the plugin was killed (20 of 20). They wait in the state
// directory's spool and reach rsyslog after the restart.
func TestAuditSurvivesAKill(t *testing.T) {
	g := startGate(t, "")
	defer g.dumpOnFailure(t)
	g.importBionic(t, "bionic:vuln")
	g.rs.Proc.Stop()
	for range 10 {
		g.cli("create", "bionic:vuln", "/bin/true")
	}
	harness.WaitFor(t, "the plugin to find syslog unreachable", 20*time.Second, func() bool {
		return strings.Contains(g.p.Proc.Tail(), "unreachable;")
	})
	if err := g.p.Proc.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	g.rs.Restart()
	g.p.Restart()
	harness.WaitFor(t, "the 10 records", 60*time.Second, func() bool { return len(g.rs.Lines()) >= 10 })
	// One more record marks the end: the spooled ones came first.
	g.cli("create", "bionic:vuln", "/bin/true")
	harness.WaitFor(t, "the 11th record", 30*time.Second, func() bool { return len(g.rs.Lines()) >= 11 })
	if n := len(g.rs.Lines()); n != 11 {
		t.Fatalf("%d records for 11 decisions", n)
	}
}
