package scoring

import (
	"testing"
	"time"
)

// FuzzParse checks that no input makes the policy parser panic, and that
// every policy it accepts is usable: normalizable, re-parsable to the same
// digest, and evaluable.
func FuzzParse(f *testing.F) {
	f.Add(DefaultYAML())
	f.Add([]byte("threshold: 1.5\nweights: {high: 2}\nwhitelist: [{id: CVE-1, images: ['a/*'], expires: 2020-01-01}]\n"))
	f.Add([]byte("overrides: [{images: [x], threshold: 3}]\nactions: []\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte("threshold: !!float 1e400\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		out, err := p.YAML()
		if err != nil {
			t.Fatalf("accepted policy does not render: %v", err)
		}
		q, err := Parse("again.yaml", out)
		if err != nil {
			t.Fatalf("rendered policy does not parse: %v\n%s", err, out)
		}
		if p.Digest() != q.Digest() {
			t.Fatalf("digest changed over a round trip:\n%s", out)
		}
		Evaluate(p, []string{"registry.example.com/app:1"}, []Finding{{ID: "CVE-1", Package: "a", Severity: High}}, time.Unix(0, 0))
	})
}
