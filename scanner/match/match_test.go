package match

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/quay/claircore"
	"github.com/quay/claircore/datastore"
	"github.com/quay/claircore/libvuln/driver"

	"github.com/divds/divds/internal/guard"
)

// oneVuln is a store that offers the same candidate for every record.
type oneVuln struct{}

func (oneVuln) Get(_ context.Context, rs []*claircore.IndexRecord, _ datastore.GetOpts) (map[string][]*claircore.Vulnerability, error) {
	out := map[string][]*claircore.Vulnerability{}
	for _, r := range rs {
		out[r.Package.ID] = []*claircore.Vulnerability{{ID: "1", Name: "CVE-2020-0001"}}
	}
	return out, nil
}

// fakeMatcher decides with vulnerable, which may panic as a matcher fed a
// version it cannot parse does.
type fakeMatcher struct {
	vulnerable func() bool
}

func (fakeMatcher) Name() string                       { return "fake" }
func (fakeMatcher) Filter(*claircore.IndexRecord) bool { return true }
func (fakeMatcher) Query() []driver.MatchConstraint    { return nil }
func (m fakeMatcher) Vulnerable(context.Context, *claircore.IndexRecord, *claircore.Vulnerability) (bool, error) {
	return m.vulnerable(), nil
}

func TestMatchGuardsMatchers(t *testing.T) {
	records := []*claircore.IndexRecord{{Package: &claircore.Package{ID: "p1", Name: "zlib", Version: "1.2"}}}
	for _, tc := range []struct {
		name      string
		m         fakeMatcher
		wantFound int
		wantErr   string
	}{
		{"vulnerable", fakeMatcher{func() bool { return true }}, 1, ""},
		{"not vulnerable", fakeMatcher{func() bool { return false }}, 0, ""},
		{"matcher panics", fakeMatcher{func() bool { panic("bad version") }}, 0, "matcher fake: internal error (panic: bad version)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Match(context.Background(), oneVuln{}, records, []driver.Matcher{tc.m})
			if tc.wantErr != "" {
				var pe *guard.PanicError
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.As(err, &pe) {
					t.Fatalf("error %v, want a PanicError containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got["p1"]) != tc.wantFound {
				t.Fatalf("found %d, want %d", len(got["p1"]), tc.wantFound)
			}
		})
	}
}
