package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/divds/divds/internal/testdata"
)

// TestDBUpdateFromMirrorAndStatus: `db update --mirror` builds a
// database with no network, and `db status --format json` lists the
// alpine, ubuntu and debian updaters, each with records.
func TestDBUpdateFromMirrorAndStatus(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	code, out, errs := run(t, "--state-dir", state, "db", "update", "--mirror", testdata.Path(t, "mirror"),
		"--updaters", "alpine,ubuntu,debian", "--format", "json")
	if code != 0 {
		t.Fatalf("db update: %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = run(t, "--state-dir", state, "db", "status", "--format", "json")
	if code != 0 {
		t.Fatalf("db status: %d %s", code, errs)
	}
	var st dbStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got := map[string]int{}
	for _, u := range st.Updaters {
		switch {
		case strings.HasPrefix(u.Name, "alpine-"):
			got["alpine"] += u.Records
		case strings.HasPrefix(u.Name, "ubuntu/"):
			got["ubuntu"] += u.Records
		case strings.HasPrefix(u.Name, "debian/"):
			got["debian"] += u.Records
		}
	}
	for _, set := range []string{"alpine", "ubuntu", "debian"} {
		if got[set] == 0 {
			t.Errorf("%s: no records in %s", set, out)
		}
	}
	if st.Sample || st.Revision != 1 || st.Stale {
		t.Errorf("status %+v", st)
	}
	// Staleness follows the policy's db.max_age.
	policy := filepath.Join(t.TempDir(), "p.yaml")
	writeFileTo(t, policy, "db: {max_age: 1ns}\n")
	_, out, errs = run(t, "--state-dir", state, "--policy", policy, "db", "status")
	if !strings.Contains(errs, "stale") {
		t.Errorf("no staleness warning:\n%s\n%s", out, errs)
	}
	// No database: a clear error naming the fix.
	code, _, errs = run(t, "--state-dir", t.TempDir(), "db", "status")
	if code != 1 || !strings.Contains(errs, "db update") {
		t.Errorf("missing database: %d %s", code, errs)
	}
}

// TestDBUpdateFallsBackToSample: with no database and no tracker
// answering, db update installs the shipped sample (exit 1, and labelled
// as sample); a second failing update leaves it as it is.
func TestDBUpdateFallsBackToSample(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "unreachable.example"), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"--state-dir", state, "db", "update", "--mirror", empty, "--updaters", "alpine,ubuntu"}
	code, out, errs := run(t, args...)
	if code != 1 || !strings.Contains(out, "installed the SAMPLE database") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	status := func() dbStatus {
		_, out, _ := run(t, "--state-dir", state, "db", "status", "--format", "json")
		var st dbStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return st
	}
	if st := status(); !st.Sample || st.Revision == 0 {
		t.Fatalf("status %+v", st)
	}
	code, _, errs = run(t, args...)
	if code != 1 || !strings.Contains(errs, "previous database is unchanged") {
		t.Fatalf("second failing update: %d %s", code, errs)
	}
	if st := status(); !st.Sample {
		t.Fatal("the sample label was lost")
	}
	// --no-sample-fallback: no database at all.
	other := filepath.Join(t.TempDir(), "state")
	if code, _, _ := run(t, "--state-dir", other, "db", "update", "--mirror", empty, "--updaters", "alpine", "--no-sample-fallback"); code != 1 {
		t.Fatal("want exit 1")
	}
	if _, err := os.Stat(filepath.Join(other, "vuln.db")); err == nil {
		t.Fatal("a database was written")
	}
}
