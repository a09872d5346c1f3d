package scanner_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/divds/divds/internal/testdata"
)

// TestDebianUrgencies scans the bookworm rootfs against a Debian tracker
// document. The shared excerpt names no package that minbase installs, so
// this test writes its own tracker-format document (the shape of
// security-tracker.debian.org/tracker/data/json) for packages bookworm
// has, one per urgency, and serves it with the shared dists/ files.
// Severities keep the tracker's plain meaning, not claircore's one level
// up.
func TestDebianUrgencies(t *testing.T) {
	tracker := map[string]map[string]any{
		"coreutils": {"CVE-2099-0001": map[string]any{"description": "test", "releases": map[string]any{
			"bookworm": map[string]string{"status": "open", "urgency": "unimportant"}}}},
		"dash": {"CVE-2099-0002": map[string]any{"description": "test", "releases": map[string]any{
			"bookworm": map[string]string{"status": "resolved", "fixed_version": "0.5.12-3", "urgency": "low"}}}},
		"gzip": {"CVE-2099-0003": map[string]any{"description": "test", "releases": map[string]any{
			"bookworm": map[string]string{"status": "resolved", "fixed_version": "1.12-2", "urgency": "medium"}}}},
		"tar": {"CVE-2099-0004": map[string]any{"description": "test", "releases": map[string]any{
			"bookworm": map[string]string{"status": "resolved", "fixed_version": "1.35+dfsg-1", "urgency": "high"}}}},
		"bash": {
			"CVE-2099-0005": map[string]any{"description": "test", "releases": map[string]any{
				"bookworm": map[string]string{"status": "open", "urgency": "not yet assigned"}}},
			"CVE-2099-0006": map[string]any{"description": "fixed long ago", "releases": map[string]any{
				"bookworm": map[string]string{"status": "resolved", "fixed_version": "5.0-1", "urgency": "high"}}},
			"CVE-2099-0007": map[string]any{"description": "no bookworm data", "releases": []any{}}},
	}
	mirrorDir := t.TempDir()
	testdata.CopyTree(t, testdata.Path(t, "mirror", "deb.debian.org"), filepath.Join(mirrorDir, "deb.debian.org"))
	raw, _ := json.Marshal(tracker)
	p := filepath.Join(mirrorDir, "security-tracker.debian.org", "tracker", "data", "json")
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	store := mirrorStore(t, mirrorDir, "debian")
	rep := scanRootfs(t, testdata.Path(t, "rootfs", "debian-12-bookworm"), store)
	got := map[string]string{}
	for _, f := range rep.Findings {
		got[f.ID+" "+f.Package] = f.Severity + "/" + f.VendorSeverity
	}
	want := map[string]string{
		"CVE-2099-0001 coreutils": "negligible/unimportant",
		"CVE-2099-0002 dash":      "low/low",
		"CVE-2099-0003 gzip":      "medium/medium",
		"CVE-2099-0004 tar":       "high/high",
		"CVE-2099-0005 bash":      "unknown/not yet assigned",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding %s (%s)", k, got[k])
		}
	}
	if rep.Image.Distribution == "" {
		t.Error("no distribution")
	}
}
