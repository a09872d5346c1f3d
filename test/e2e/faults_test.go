package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
