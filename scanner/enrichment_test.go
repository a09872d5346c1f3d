package scanner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/quay/claircore/libvuln/driver"

	"github.com/divds/divds/internal/testdata"
	"github.com/divds/divds/internal/testdb"
	"github.com/divds/divds/scanner"
	"github.com/divds/divds/scanner/bundle"
	"github.com/divds/divds/scanner/source"
	"github.com/divds/divds/scanner/updater"
	"github.com/divds/divds/scanner/vulnstore"
	"github.com/divds/divds/scoring"
)

// TestNVDEnrichment: Alpine gives no severity; the NVD CVSS enrichment
// (clair.cvss, NVD API 2.0 cvssData) does, and scoring falls back to it.
// The enrichment survives an export and re-import.
func TestNVDEnrichment(t *testing.T) {
	dir := t.TempDir()
	testdb.Import(t, dir, "alpine-secdb.jsonl.zst")
	root := testdata.Path(t, "rootfs", "alpine-3.7.3")
	store, err := vulnstore.Open(vulnstore.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	plain := scanRootfs(t, root, store)
	store.Close()
	if len(plain.Findings) == 0 {
		t.Fatal("no Alpine findings to enrich")
	}
	cve := plain.Findings[0].ID

	ctx := context.Background()
	b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Abort()
	if err := b.StartUpdater(updater.CVSSSet, vulnstore.KindEnrichment, "fp", time.Now()); err != nil {
		t.Fatal(err)
	}
	data := json.RawMessage(`{"version":"3.1","vectorString":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H","baseScore":9.8,"baseSeverity":"CRITICAL"}`)
	if err := b.AddEnrichment(driver.EnrichmentRecord{Tags: []string{cve}, Enrichment: data}); err != nil {
		t.Fatal(err)
	}
	if err := b.FinishUpdater(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	check := func(dir string) {
		t.Helper()
		s, err := vulnstore.Open(vulnstore.Path(dir))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rep, _, err := scanner.New(scanner.Options{}).Scan(ctx, source.Rootfs{Dir: root}, s)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range rep.Findings {
			if f.ID == cve {
				found = true
				if f.CVSS == nil || f.CVSS.Score != 9.8 || f.CVSS.Severity != "critical" || f.Severity != "unknown" {
					t.Fatalf("finding %+v, cvss %+v", f, f.CVSS)
				}
			}
		}
		if !found {
			t.Fatalf("%s not found", cve)
		}
		res := rep.Evaluate(scoring.Default(), time.Now())
		if res.Counts.Unapproved[scoring.Critical] == 0 {
			t.Fatalf("the vendor gave no severity: NVD's critical must weigh (counts %+v)", res.Counts)
		}
	}
	check(dir)

	s, _ := vulnstore.Open(vulnstore.Path(dir))
	var buf bytes.Buffer
	if _, err := bundle.Export(ctx, s, &buf); err != nil {
		t.Fatal(err)
	}
	s.Close()
	dir2 := t.TempDir()
	b2, _ := vulnstore.Begin(ctx, dir2, vulnstore.BuildOptions{})
	if _, err := bundle.Import(ctx, b2, &buf, bundle.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	check(dir2)
}
