package guard

import (
	"errors"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	sentinel := errors.New("plain failure")
	for _, tc := range []struct {
		name    string
		fn      func() error
		wantErr string
		panics  bool
	}{
		{"ok", func() error { return nil }, "", false},
		{"error passes through", func() error { return sentinel }, "plain failure", false},
		{"panic string", func() error { panic("unreachable") }, "dpkg scanner: internal error (panic: unreachable)", true},
		{"runtime panic", func() error { var m map[string]int; m["x"] = 1; return nil }, "assignment to entry in nil map", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Run("dpkg scanner", tc.fn)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			var pe *PanicError
			if got := errors.As(err, &pe); got != tc.panics {
				t.Fatalf("PanicError: %v, want %v", got, tc.panics)
			}
			if tc.panics && len(pe.Stack) == 0 {
				t.Fatal("no stack recorded")
			}
		})
	}
}
