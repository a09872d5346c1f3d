package updater

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/divds/divds/internal/testdata"
)

func copyTree(t *testing.T, src, dst string) { testdata.CopyTree(t, src, dst) }

func TestDebianEmptyReleasesList(t *testing.T) {
	asIs := testdata.Path(t, "mirror", "_as-is", "security-tracker.debian.org", "tracker", "data", "json")
	raw, err := os.ReadFile(asIs)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"releases": []`)) {
		t.Fatal("the as-is tracker no longer has the quirk this test is about")
	}
	fixed, err := NormalizeDebianTracker(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(fixed) || bytes.Contains(fixed, []byte(`"releases":[]`)) {
		t.Fatalf("not normalized: %s", fixed)
	}
	// The whole updater, over a mirror serving the original document.
	mirrorDir := t.TempDir()
	copyTree(t, testdata.Path(t, "mirror", "deb.debian.org"), filepath.Join(mirrorDir, "deb.debian.org"))
	copyTree(t, filepath.Dir(filepath.Dir(filepath.Dir(asIs))), filepath.Join(mirrorDir, "security-tracker.debian.org"))
	sum := runOver(t, mirrorDir, "debian")
	if len(sum.Results) != 1 || sum.Results[0].Status != Updated || sum.Results[0].Records != 4 {
		t.Fatalf("debian over the as-is tracker: %+v", sum.Results)
	}
}

func TestDebianTrackerErrors(t *testing.T) {
	for _, in := range []string{`[]`, `{"pkg": {"CVE-1": {"releases": "x"}}}`, `{`} {
		if _, err := NormalizeDebianTracker(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", in)
		}
	}
}

// An ubuntu set that finds no OVAL file yields no updater: that must be
// a reported failure, not a quiet success.
func TestUbuntuZeroUpdatersIsAFailure(t *testing.T) {
	mirrorDir := t.TempDir()
	copyTree(t, testdata.Path(t, "mirror", "api.launchpad.net"), filepath.Join(mirrorDir, "api.launchpad.net"))
	sum := runOver(t, mirrorDir, "ubuntu")
	if len(sum.Results) != 1 || sum.Results[0].Status != Failed || !strings.Contains(sum.Results[0].Error, "no updaters") {
		t.Fatalf("got %+v", sum.Results)
	}
	if !sum.AllFailed() {
		t.Fatal("AllFailed must be true")
	}
}
