package scoring

import (
	"os"
	"strings"
	"testing"
)

// TestPolicyReferenceIsComplete: every key the parser accepts appears in
// the admin guide's policy reference, so the documentation cannot fall
// behind the code.
func TestPolicyReferenceIsComplete(t *testing.T) {
	raw, err := os.ReadFile("../docs/admin-guide.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start := strings.Index(doc, "## Policy reference")
	if start < 0 {
		t.Fatal("docs/admin-guide.md has no Policy reference section")
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	for _, k := range Keys() {
		if !strings.Contains(section, "`"+k+"`") {
			t.Errorf("policy key %s is not in the policy reference of docs/admin-guide.md", k)
		}
	}
}
