package scoring

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/quick"
	"time"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// mix makes n findings of each severity given, with distinct IDs.
func mix(counts map[Severity]int) []Finding {
	var out []Finding
	for _, s := range Severities() {
		for i := 0; i < counts[s]; i++ {
			out = append(out, Finding{
				ID:       fmt.Sprintf("CVE-2020-%s%04d", s, i),
				Package:  "pkg-" + s.String(),
				Version:  "1.0",
				FixedIn:  "1.1",
				Severity: s,
			})
		}
	}
	return out
}

func TestTable5Arithmetic(t *testing.T) {
	tests := []struct {
		name     string
		counts   map[Severity]int
		score    string
		exceeded bool
	}{
		{"one high", map[Severity]int{High: 1}, "7.95", false},
		{"76.2, mixed", map[Severity]int{Critical: 3, Medium: 6, Low: 7, Negligible: 2}, "76.20", false},
		{"76.2, high and critical", map[Severity]int{High: 6, Critical: 3}, "76.20", false},
		{"183.45", map[Severity]int{Negligible: 9, High: 1, Critical: 18}, "183.45", false},
		{"297.4", map[Severity]int{Negligible: 5, High: 12, Critical: 21}, "297.40", true},
		{"unknown weighs 0", map[Severity]int{Unknown: 500}, "0.00", false},
		{"medium float drift", map[Severity]int{Medium: 37}, "201.65", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Evaluate(Default(), []string{"app:1"}, mix(tt.counts), now)
			if got := r.Score.String(); got != tt.score {
				t.Errorf("score = %s, want %s", got, tt.score)
			}
			if r.Exceeded != tt.exceeded {
				t.Errorf("exceeded = %v, want %v", r.Exceeded, tt.exceeded)
			}
			want := Allow
			if tt.exceeded {
				want = Deny
			}
			if r.Verdict != want {
				t.Errorf("verdict = %s, want %s", r.Verdict, want)
			}
			if r.Threshold != DefaultThreshold {
				t.Errorf("threshold = %s, want 200.00", r.Threshold)
			}
		})
	}
}

func TestScoreEqualToThresholdAllows(t *testing.T) {
	p := Default()
	p.Threshold = 795 * 3 // three highs exactly
	r := Evaluate(p, nil, mix(map[Severity]int{High: 3}), now)
	if r.Score != p.Threshold || r.Verdict != Allow || r.Exceeded {
		t.Fatalf("score %s θ %s verdict %s exceeded %v: equality must allow", r.Score, r.Threshold, r.Verdict, r.Exceeded)
	}
	r = Evaluate(p, nil, append(mix(map[Severity]int{High: 3}), Finding{ID: "CVE-1", Package: "x", Severity: Negligible}), now)
	if r.Verdict != Deny {
		t.Fatalf("score %s over θ %s: verdict %s, want deny", r.Score, r.Threshold, r.Verdict)
	}
}

func TestWhitelist(t *testing.T) {
	high := Finding{ID: "CVE-2019-1543", Package: "libssl1.1", Source: "openssl", Version: "1.1.0f-3", FixedIn: "1.1.0j-1", Severity: High}
	refs := []string{"registry.example.com/app:1", "sha256:" + fmt.Sprintf("%064d", 1)}
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	tests := []struct {
		name     string
		entry    Entry
		approved bool
		expired  bool
	}{
		{"id only", Entry{ID: "CVE-2019-1543"}, true, false},
		{"id case-insensitive", Entry{ID: "cve-2019-1543"}, true, false},
		{"other id", Entry{ID: "CVE-2019-1544"}, false, false},
		{"binary package", Entry{ID: "CVE-2019-1543", Package: "libssl1.1"}, true, false},
		{"source package", Entry{ID: "CVE-2019-1543", Package: "openssl"}, true, false},
		{"other package", Entry{ID: "CVE-2019-1543", Package: "curl"}, false, false},
		{"image exact", Entry{ID: "CVE-2019-1543", Images: []string{"registry.example.com/app:1"}}, true, false},
		{"image repo any tag", Entry{ID: "CVE-2019-1543", Images: []string{"registry.example.com/app"}}, true, false},
		{"image glob", Entry{ID: "CVE-2019-1543", Images: []string{"registry.example.com/*"}}, true, false},
		{"image by id", Entry{ID: "CVE-2019-1543", Images: []string{refs[1]}}, true, false},
		{"image other tag", Entry{ID: "CVE-2019-1543", Images: []string{"registry.example.com/app:2"}}, false, false},
		{"image other registry", Entry{ID: "CVE-2019-1543", Images: []string{"docker.io/*"}}, false, false},
		{"expires today still approves", Entry{ID: "CVE-2019-1543", Expires: day("2026-11-27")}, true, false},
		{"expires in future", Entry{ID: "CVE-2019-1543", Expires: day("2027-01-01")}, true, false},
		{"expired yesterday", Entry{ID: "CVE-2019-1543", Expires: day("2026-11-26")}, false, true},
		{"expired but other image", Entry{ID: "CVE-2019-1543", Images: []string{"other"}, Expires: day("2020-01-01")}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			p.Whitelist = []Entry{tt.entry}
			r := Evaluate(p, refs, []Finding{high}, now)
			f := r.Findings[0]
			if f.Approved != tt.approved {
				t.Fatalf("approved = %v, want %v", f.Approved, tt.approved)
			}
			wantScore := Points(795)
			if tt.approved {
				wantScore = 0
				if f.ApprovedBy == nil || f.ApprovedBy.ID != tt.entry.ID || f.Weight != 0 {
					t.Errorf("approved finding: by %+v weight %s", f.ApprovedBy, f.Weight)
				}
				if r.Counts.Approved[High] != 1 || r.Counts.Unapproved[High] != 0 {
					t.Errorf("counts = %+v", r.Counts)
				}
			}
			if r.Score != wantScore {
				t.Errorf("score = %s, want %s", r.Score, wantScore)
			}
			if got := len(r.Expired) == 1; got != tt.expired {
				t.Errorf("expired listed = %v (%+v), want %v", got, r.Expired, tt.expired)
			}
		})
	}
}

func TestLiveEntryWinsOverExpired(t *testing.T) {
	p := Default()
	old, _ := time.Parse(time.DateOnly, "2020-01-01")
	p.Whitelist = []Entry{{ID: "CVE-1", Expires: old}, {ID: "CVE-1", Reason: "still fine"}}
	r := Evaluate(p, nil, []Finding{{ID: "CVE-1", Package: "a", Severity: Critical}}, now)
	if !r.Findings[0].Approved || r.Findings[0].ApprovedBy.Reason != "still fine" || len(r.Expired) != 0 {
		t.Fatalf("got %+v, expired %+v", r.Findings[0], r.Expired)
	}
}

func TestCustomWeights(t *testing.T) {
	p := Default()
	p.Weights[Critical] = 10000
	p.Weights[Unknown] = 100
	p.Threshold = 10000
	r := Evaluate(p, nil, mix(map[Severity]int{Critical: 1, Unknown: 1}), now)
	if r.Score != 10100 || r.Verdict != Deny {
		t.Fatalf("score %s verdict %s, want 101.00 deny", r.Score, r.Verdict)
	}
}

func TestOverrides(t *testing.T) {
	th := Points(1000)
	p := Default()
	p.Overrides = []Override{
		{Images: []string{"registry.prod.example.com/*"}, Threshold: &th, Weights: map[Severity]Points{Critical: 2000}},
		{Images: []string{"registry.prod.example.com/*"}, Threshold: new(Points)}, // never reached: first wins
	}
	f := mix(map[Severity]int{Critical: 1})
	prod := Evaluate(p, []string{"registry.prod.example.com/app:1"}, f, now)
	if prod.Threshold != 1000 || prod.Score != 2000 || prod.Verdict != Deny {
		t.Errorf("prod: θ %s score %s verdict %s", prod.Threshold, prod.Score, prod.Verdict)
	}
	dev := Evaluate(p, []string{"registry.dev.example.com/app:1"}, f, now)
	if dev.Threshold != DefaultThreshold || dev.Score != 950 || dev.Verdict != Allow {
		t.Errorf("dev: θ %s score %s verdict %s", dev.Threshold, dev.Score, dev.Verdict)
	}
}

func TestAuditNeverDenies(t *testing.T) {
	p := Default()
	p.Mode = ModeAudit
	p.Threshold = 0
	r := Evaluate(p, nil, mix(map[Severity]int{Critical: 100}), now)
	if r.Verdict != Allow || !r.Exceeded || r.Mode != ModeAudit || r.Score != 95000 {
		t.Fatalf("audit: verdict %s exceeded %v mode %s score %s", r.Verdict, r.Exceeded, r.Mode, r.Score)
	}
}

func TestUnfixed(t *testing.T) {
	fs := []Finding{
		{ID: "CVE-1", Package: "a", Version: "1", FixedIn: "", Severity: Critical},
		{ID: "CVE-2", Package: "a", Version: "1", FixedIn: "2", Severity: High},
	}
	tests := []struct {
		mode    Unfixed
		score   Points
		ignored int
	}{
		{UnfixedCount, 950 + 795, 0},
		{UnfixedIgnore, 795, 1},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			p := Default()
			p.Unfixed = tt.mode
			r := Evaluate(p, nil, fs, now)
			if r.Score != tt.score || r.Counts.Ignored != tt.ignored {
				t.Fatalf("score %s ignored %d, want %s %d", r.Score, r.Counts.Ignored, tt.score, tt.ignored)
			}
			if len(r.Findings) != 2 {
				t.Fatalf("ignored findings must still be listed: %d", len(r.Findings))
			}
		})
	}
}

func TestSeveritySource(t *testing.T) {
	tests := []struct {
		name   string
		source SeveritySource
		f      Finding
		want   Severity
	}{
		{"vendor uses vendor", SourceVendor, Finding{Severity: Low, CVSS: 9.8}, Low},
		{"vendor falls back to nvd", SourceVendor, Finding{Severity: Unknown, CVSS: 9.8}, Critical},
		{"vendor falls back to nvd rating", SourceVendor, Finding{NVDSeverity: High}, High},
		{"vendor, nothing known", SourceVendor, Finding{}, Unknown},
		{"nvd uses nvd", SourceNVD, Finding{Severity: Low, CVSS: 7.5}, High},
		{"nvd falls back to vendor", SourceNVD, Finding{Severity: Medium}, Medium},
		{"highest picks vendor", SourceHighest, Finding{Severity: Critical, CVSS: 5.0}, Critical},
		{"highest picks nvd", SourceHighest, Finding{Severity: Low, CVSS: 5.0}, Medium},
		{"highest, vendor only", SourceHighest, Finding{Severity: Negligible}, Negligible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Default()
			p.SeveritySource = tt.source
			tt.f.ID, tt.f.Package = "CVE-1", "a"
			r := Evaluate(p, nil, []Finding{tt.f}, now)
			if got := r.Findings[0].Counted; got != tt.want {
				t.Fatalf("counted %s, want %s", got, tt.want)
			}
			if r.Score != p.Weights.Of(tt.want) {
				t.Fatalf("score %s, want %s", r.Score, p.Weights.Of(tt.want))
			}
		})
	}
}

func TestDuplicateCountsOnce(t *testing.T) {
	f := Finding{ID: "CVE-2019-1543", Package: "openssl", Version: "1.1.0f-3", Severity: High, Layer: "sha256:a"}
	dup := f
	dup.Layer = "sha256:b"
	lower := f
	lower.ID = "cve-2019-1543"
	heavier := f
	heavier.Severity = Critical
	other := f
	other.Version = "1.1.0g-1"
	tests := []struct {
		name  string
		in    []Finding
		score Points
		n     int
	}{
		{"exact", []Finding{f, f}, 795, 1},
		{"other layer", []Finding{f, dup}, 795, 1},
		{"id case", []Finding{f, lower}, 795, 1},
		{"heavier kept", []Finding{f, heavier}, 950, 1},
		{"other version counts", []Finding{f, other}, 1590, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Evaluate(Default(), nil, tt.in, now)
			if r.Score != tt.score || len(r.Findings) != tt.n {
				t.Fatalf("score %s findings %d, want %s %d", r.Score, len(r.Findings), tt.score, tt.n)
			}
		})
	}
}

func TestFindingsSorted(t *testing.T) {
	r := Evaluate(Default(), nil, []Finding{
		{ID: "CVE-3", Package: "a", Severity: Low},
		{ID: "CVE-2", Package: "a", Severity: Critical},
		{ID: "CVE-1", Package: "a", Severity: Low},
	}, now)
	var got []string
	for _, f := range r.Findings {
		got = append(got, f.ID)
	}
	if want := []string{"CVE-2", "CVE-1", "CVE-3"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestOrderIndependence is a property test: any permutation of the same
// findings, duplicates included, gives the same result.
func TestOrderIndependence(t *testing.T) {
	p := Default()
	p.Whitelist = []Entry{{ID: "CVE-2"}, {ID: "CVE-5", Package: "b"}, {ID: "CVE-7", Expires: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}}
	p.Unfixed = UnfixedIgnore
	prop := func(seed uint64, n uint8) bool {
		rng := rand.New(rand.NewPCG(seed, 7))
		fs := make([]Finding, int(n)%60+1)
		for i := range fs {
			fs[i] = Finding{
				ID:       fmt.Sprintf("CVE-%d", rng.IntN(10)),
				Package:  []string{"a", "b", "c"}[rng.IntN(3)],
				Version:  []string{"1", "2"}[rng.IntN(2)],
				FixedIn:  []string{"", "3"}[rng.IntN(2)],
				Severity: Severity(rng.IntN(int(numSeverities))),
				CVSS:     float64(rng.IntN(100)) / 10,
				Layer:    []string{"l1", "l2"}[rng.IntN(2)],
			}
		}
		want := Evaluate(p, nil, fs, now)
		for range 5 {
			shuffled := append([]Finding(nil), fs...)
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			if got := Evaluate(p, nil, shuffled, now); !reflect.DeepEqual(got, want) {
				t.Logf("seed %d: %+v\n!=\n%+v", seed, got, want)
				return false
			}
		}
		return true
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 300}); err != nil {
		t.Fatal(err)
	}
}

func TestDigestStable(t *testing.T) {
	a, err := Parse("a.yaml", []byte("threshold: 200\nweights: {high: 7.95}\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("b.yaml", []byte("mode: enforce # the default\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest() != b.Digest() {
		t.Fatal("spelled-out defaults must not change the digest")
	}
	c, _ := Parse("c.yaml", []byte("threshold: 201\n"))
	if c.Digest() == a.Digest() {
		t.Fatal("a changed threshold must change the digest")
	}
}

func TestNextLapse(t *testing.T) {
	d := func(s string) time.Time { t, _ := time.Parse(time.DateOnly, s); return t }
	pol := Default()
	pol.Whitelist = []Entry{{ID: "CVE-1", Expires: d("2027-03-01")}, {ID: "CVE-2", Expires: d("2027-02-01")}, {ID: "CVE-3"}}
	for _, tt := range []struct {
		now  time.Time
		want time.Time
	}{
		{d("2027-01-15"), d("2027-02-02")},                     // the earlier entry lapses first
		{d("2027-02-01").Add(23 * time.Hour), d("2027-02-02")}, // still good on its last day
		{d("2027-02-02"), d("2027-03-02")},                     // lapsed: the next one
		{d("2027-03-02"), time.Time{}},                         // none left to lapse
	} {
		if got := pol.NextLapse(tt.now); !got.Equal(tt.want) {
			t.Errorf("at %s: %s, want %s", tt.now, got, tt.want)
		}
	}
}
