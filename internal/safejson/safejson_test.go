package safejson

import (
	"strings"
	"testing"

	"github.com/quay/claircore"
)

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string
	}{
		{"valid", `{"name":"CVE-1","package":{"name":"p","kind":"source"},"arch_op":"equals","normalized_severity":"High"}`, ""},
		{"kind substring", `{"package":{"kind":"ource"}}`, "malformed field value"},
		{"arch_op substring", `{"arch_op":"qual"}`, "malformed field value"},
		{"severity substring", `{"normalized_severity":"edium"}`, "malformed field value"},
		{"syntax", `{"name":`, "unexpected end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v claircore.Vulnerability
			err := Unmarshal([]byte(tc.in), &v)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
