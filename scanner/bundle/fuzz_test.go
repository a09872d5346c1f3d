package bundle

import (
	"bytes"
	"context"
	"testing"

	"github.com/divds/divds/scanner/vulnstore"
)

// FuzzImport feeds arbitrary bytes to the bundle reader: it must return
// an error or a count, never panic or hang.
func FuzzImport(f *testing.F) {
	f.Add([]byte(`{"Updater":"u","Fingerprint":"","Date":"2020-01-01T00:00:00Z","Ref":"800f0162-21f3-499b-8dfa-c27682c878d1","Vuln":{"name":"CVE-1","package":{"name":"p","kind":"source"}},"Kind":"vulnerability"}` + "\n"))
	f.Add([]byte(`{"Updater":"u","Ref":"800f0162-21f3-499b-8dfa-c27682c878d1","Enrichment":{"Tags":["a"],"Enrichment":{}},"Kind":"enrichment"}`))
	f.Add([]byte(`{"Updater":"u","Ref":"800f0162-21f3-499b-8dfa-c27682c878d1","Vuln":{"package":{"kind":"ource"},"arch_op":"qual"},"Kind":"vulnerability"}`))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := context.Background()
		b, err := vulnstore.Begin(ctx, dir, vulnstore.BuildOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Abort()
		Import(ctx, b, bytes.NewReader(data), Options{MaxBytes: 1 << 20, MaxLine: 1 << 16})
	})
}
