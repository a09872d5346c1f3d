package main

import (
	"encoding/json"
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
