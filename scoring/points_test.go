package scoring

import (
	"encoding/json"
	"testing"
)

func TestParsePoints(t *testing.T) {
	tests := []struct {
		in      string
		want    Points
		wantErr bool
	}{
		{"200", 20000, false},
		{"5.45", 545, false},
		{"0.5", 50, false},
		{".5", 50, false},
		{"7.", 700, false},
		{"-1", -100, false},
		{"1.234", 0, true},
		{"1e3", 0, true},
		{"abc", 0, true},
		{"", 0, true},
		{".", 0, true},
		{"0x10", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := ParsePoints(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePoints(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPointsString(t *testing.T) {
	for in, want := range map[Points]string{29740: "297.40", 795: "7.95", 0: "0.00", 5: "0.05", -150: "-1.50"} {
		if got := in.String(); got != want {
			t.Errorf("%d: %s, want %s", int64(in), got, want)
		}
	}
}

func TestPointsJSON(t *testing.T) {
	b, err := json.Marshal(struct{ S Points }{29740})
	if err != nil || string(b) != `{"S":297.40}` {
		t.Fatalf("%s %v", b, err)
	}
	var v struct{ S Points }
	if err := json.Unmarshal([]byte(`{"S":297.4}`), &v); err != nil || v.S != 29740 {
		t.Fatalf("%v %v", v.S, err)
	}
}
