package match

import (
	"slices"
	"testing"

	"github.com/quay/claircore"
)

// TestIDs: an entry naming several CVEs gives each; placeholders are not
// IDs (seen in Alpine's secdb v3.7: "CVE-2017-5715 CVE-2017-5754
// CVE-2018-3646" for one xen fix, and "CVE-????-?????  XSA-284").
func TestIDs(t *testing.T) {
	tests := []struct {
		self, name string
		want       []string
	}{
		{"", "CVE-2019-14697", []string{"CVE-2019-14697"}},
		{"", "CVE-2017-5715 CVE-2017-5754 CVE-2018-3646", []string{"CVE-2017-5715", "CVE-2017-5754", "CVE-2018-3646"}},
		{"", "CVE-2017-5715 CVE-2017-5715", []string{"CVE-2017-5715"}},
		{"", "CVE-????-?????  XSA-284", []string{"XSA-284"}},
		{"", "CVE-2013-4235 on Ubuntu 18.04 LTS (bionic) - low.", []string{"CVE-2013-4235"}},
		{"", "CVE-2020-1", []string{"CVE-2020-1"}}, // no CVE (four digits at least): kept as written
		{"", "ALAS-2020-1234", []string{"ALAS-2020-1234"}},
		{"", "RHSA-2020:1234: openssl security update (Important)", []string{"RHSA-2020:1234"}},
		{"", "GHSA-abcd-1234-wxyz", []string{"GHSA-abcd-1234-wxyz"}},
		{"", "  free text  ", []string{"free text"}},
	}
	for _, tt := range tests {
		v := &claircore.Vulnerability{Name: tt.name}
		v.Self.Name = tt.self
		got := IDs(v)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q / %q: %q, want %q", tt.self, tt.name, got, tt.want)
		}
	}
}
