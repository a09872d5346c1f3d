package report

import (
	"bytes"
	"testing"
	"time"

	"github.com/divds/divds/scoring"
)

// FuzzRead: a hand-edited or corrupted report is an error or a report
// that evaluates, never a panic.
func FuzzRead(f *testing.F) {
	f.Add([]byte(`{"schema_version":1,"image":{"id":"sha256:a","names":["a:1"],"digests":[],"layers":[]},"packages":[],"findings":[{"id":"CVE-1","package":"p","version":"1","fixed_in":"2","severity":"high","cvss":{"score":7.5}}],"database":{"revision":1}}`))
	f.Add([]byte(`{"schema_version":1,"evaluation":{"score":297.40}}`))
	f.Add([]byte(`{"schema_version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		rep, err := Read(bytes.NewReader(data))
		if err != nil {
			return
		}
		res := rep.Evaluate(scoring.Default(), time.Unix(0, 0))
		var buf bytes.Buffer
		if err := rep.WriteTable(&buf, res, TableOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := rep.Write(&buf); err != nil {
			t.Fatal(err)
		}
	})
}
