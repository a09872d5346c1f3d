package scoring

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Points is a non-negative decimal with two fractional digits, stored as
// integer hundredths. Weights, scores and thresholds are Points.
type Points int64

// maxPoints bounds parsed values so that summing many weights cannot overflow.
const maxPoints = Points(1e15)

// String prints the value with exactly two decimals: 297.40, 7.95, 200.00.
func (p Points) String() string {
	sign := ""
	v := int64(p)
	if v < 0 {
		sign, v = "-", -v
	}
	return fmt.Sprintf("%s%d.%02d", sign, v/100, v%100)
}

// Float returns the value as a float64, for metrics and charts only.
func (p Points) Float() float64 { return float64(p) / 100 }

// ParsePoints reads a plain decimal such as "200", "5.45" or "0.5". It
// rejects signs other than a leading minus (reported as negative),
// exponents, more than two decimals, and text, so a typo in a policy never
// becomes a silently rounded weight.
func ParsePoints(s string) (Points, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty number")
	}
	neg := false
	if t[0] == '-' {
		neg, t = true, t[1:]
	} else if t[0] == '+' {
		t = t[1:]
	}
	intPart, frac, hasDot := strings.Cut(t, ".")
	if intPart == "" && (!hasDot || frac == "") {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	for _, part := range []string{intPart, frac} {
		for _, c := range part {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("%q is not a plain decimal number", s)
			}
		}
	}
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q has more than two decimal places", s)
	}
	var whole int64
	if intPart != "" {
		w, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil || w > int64(maxPoints/100) {
			return 0, fmt.Errorf("%q is too large", s)
		}
		whole = w
	}
	var hundredths int64
	if frac != "" {
		f, _ := strconv.ParseInt(frac, 10, 64)
		if len(frac) == 1 {
			f *= 10
		}
		hundredths = f
	}
	v := Points(whole*100 + hundredths)
	if neg {
		v = -v
	}
	return v, nil
}

// PointsFromFloat converts a float with at most two meaningful decimals,
// rounding to the nearest hundredth. It is for data that arrives as JSON
// numbers (a saved report), never for policy input.
func PointsFromFloat(f float64) (Points, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > float64(maxPoints/100) {
		return 0, fmt.Errorf("%v is out of range", f)
	}
	return Points(math.Round(f * 100)), nil
}

// MarshalJSON writes the exact two-decimal form as a JSON number.
func (p Points) MarshalJSON() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalJSON reads a JSON number (or a numeric string) exactly.
func (p *Points) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := ParsePoints(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}
