package scanner_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/scoring"
)

// TestCoverage: an image whose packages cannot be matched scores 0
// without being clean; the report says so, and the default policy
// refuses it. Measured before: CentOS 7 (144 packages), Debian 12 without
// Debian data and an empty directory all got "0 total, ALLOW".
func TestCoverage(t *testing.T) {
	store := bundleDB(t, "alpine-secdb.jsonl.zst")
	tests := []struct {
		name    string
		root    func(t *testing.T) string
		status  scoring.Coverage
		reason  string
		verdict scoring.Verdict
	}{
		{"alpine 3.7 with Alpine data", func(t *testing.T) string { return testdata.Path(t, "rootfs", "alpine-3.7.3") },
			scoring.Diagnosed, "matched against alpine-community-v3.7-updater, alpine-main-v3.7-updater", scoring.Allow},
		{"debian 12 without Debian data", func(t *testing.T) string { return testdata.Path(t, "rootfs", "debian-12-bookworm") },
			scoring.NoData, "holds no data for it: the Debian security tracker", scoring.Deny},
		{"centos 7", centos7Root, scoring.NoData, "144 packages of CentOS Linux 7 (Core), and the database holds no data for it: DIVDS does not match centos packages yet", scoring.Deny},
		{"no os-release", func(t *testing.T) string {
			root := copyDir(t, testdata.Path(t, "rootfs", "alpine-3.7.3"))
			for _, f := range []string{"etc/os-release", "etc/alpine-release"} {
				if err := os.Remove(filepath.Join(root, f)); err != nil {
					t.Fatal(err)
				}
			}
			return root
		}, scoring.UnknownDistribution, "13 packages, but no distribution recognized", scoring.Deny},
		{"empty", func(t *testing.T) string { return t.TempDir() }, scoring.NoPackages, "no package database", scoring.Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := scanRootfs(t, tt.root(t), store)
			if rep.Coverage == nil || rep.Coverage.Status != string(tt.status) || !strings.Contains(rep.Coverage.Reason, tt.reason) {
				t.Fatalf("coverage %+v, want %s with %q", rep.Coverage, tt.status, tt.reason)
			}
			if res := rep.Evaluate(scoring.Default(), time.Now()); res.Verdict != tt.verdict {
				t.Fatalf("verdict %s under the default policy: %s", res.Verdict, res.Summary())
			}
		})
	}
	// The policy decides: undiagnosed: allow takes the score alone.
	pol := scoring.Default()
	pol.Undiagnosed = scoring.DecideAllow
	if res := scanRootfs(t, centos7Root(t), store).Evaluate(pol, time.Now()); res.Verdict != scoring.Allow {
		t.Fatalf("undiagnosed: allow still denies: %s", res.Summary())
	}
}

// TestSeverityFromOtherTrackers: Alpine's secdb rates nothing, so every
// Alpine image scored 0 (alpine 3.7.3 with CVE-2019-14697, 9.8 in NVD,
// included). With Ubuntu's data in the same database, the finding weighs
// what Ubuntu's tracker rates the CVE, and says so.
func TestSeverityFromOtherTrackers(t *testing.T) {
	dir := t.TempDir()
	testdb.Import(t, dir, "alpine-secdb.jsonl.zst", "ubuntu-bionic-oval-2021-08-31.jsonl.zst")
	store, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rep := scanRootfs(t, testdata.Path(t, "rootfs", "alpine-3.7.3"), store)
	found := 0
	for _, f := range rep.Findings {
		if f.ID == "CVE-2019-14697" {
			found++
			if f.Severity != "medium" || f.SeveritySource != "ubuntu" || f.VendorSeverity != "" {
				t.Fatalf("%+v", f)
			}
		}
	}
	if found == 0 {
		t.Fatal("CVE-2019-14697 not found")
	}
	if res := rep.Evaluate(scoring.Default(), time.Now()); res.Score == 0 {
		t.Fatalf("still scores 0: %s", res.Summary())
	}
	// Alone, the Alpine data rates nothing: unknown, as before.
	rep = scanRootfs(t, testdata.Path(t, "rootfs", "alpine-3.7.3"), bundleDB(t, "alpine-secdb.jsonl.zst"))
	for _, f := range rep.Findings {
		if f.Severity != "unknown" || f.SeveritySource != "" {
			t.Fatalf("%+v", f)
		}
	}
}
