package scoring

import "testing"

func TestSummary(t *testing.T) {
	fs := append(mix(map[Severity]int{Critical: 21, High: 12, Negligible: 5}),
		Finding{ID: "CVE-2019-1543", Package: "openssl", Version: "1.1.0f-3", FixedIn: "1.1.0j-1", Severity: Critical})
	p := Default()
	p.Whitelist = []Entry{{ID: "CVE-2020-critical0000"}}
	got := Evaluate(p, nil, fs, now).Summary()
	want := "image score 297.40 > threshold 200.00 (critical 21, high 12, negligible 5; 1 approved; top: CVE-2019-1543 openssl 1.1.0f-3, fixed in 1.1.0j-1)"
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got := Evaluate(p, nil, nil, now).Summary(); got != "image score 0.00 <= threshold 200.00 (no unapproved findings)" {
		t.Fatalf("empty: %s", got)
	}
}
